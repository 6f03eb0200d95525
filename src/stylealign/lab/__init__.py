"""The built-in lab: everything an experiment needs on a laptop CPU, with no model hub (docs/lab.md).

- `world`: deterministic arithmetic word problems with computation graphs and difficulty levels 1-5;
- `styles`: the student's native style (with paraphrases and habits), the oracle's polished one;
- `checker` / `reward`: first wrong step of any trace; the checker plus a reward model's taste for polish;
- `student`: a tiny Qwen2 pretrained on CPU on a mixture led by its own style (`ensure_student`, `lab:student`);
- the programmatic oracle with the paper's operations lives in `stylealign.oracles.lab` (its Engine: `oracles.engine.OracleEngine`, `lab:oracle`).
"""
