"""Answer extraction and equivalence, safe to run on 100K model outputs.

`grade` compares an answer pulled from free-form text with a bare reference
answer. Plain numbers are compared exactly in Python (GSM8K needs nothing
more, and it is thousands of times faster than sympy); everything else goes
to math-verify with its SIGALRM timeouts disabled, because those break in
threads and Ray workers. `grade_batch` runs the slow items in worker
processes and enforces the timeout itself: a worker stuck in sympy is killed
and replaced, and its item counts as wrong and is reported. Each distinct
(answer, reference) pair is sent once and its verdict remembered, and the
workers stay up between batches. Model output is only ever parsed (by
math-verify's LaTeX parser), never evaluated.
"""

from stylealign.grading.equivalence import equivalent, fast_grade, grade
from stylealign.grading.extract import as_number, extract_answer, final_boxed, last_boxed, reference_answer
from stylealign.grading.pool import GradedBatch, close_workers, grade_batch, grade_many, start_workers

__all__ = [
    "GradedBatch",
    "as_number",
    "close_workers",
    "equivalent",
    "extract_answer",
    "fast_grade",
    "final_boxed",
    "grade",
    "grade_batch",
    "grade_many",
    "last_boxed",
    "reference_answer",
    "start_workers",
]
