"""The programmatic oracles: the lab's (`lab.LabOracle`), one for problems with a reference solution
(`reference.ReferenceOracle`, GSM8K), the house style both write in (`house_style`), and the Engine that
answers the oracle prompt templates with them (`engine.OracleEngine`, engine type `lab-oracle`).

Each oracle offers the paper's operations on a `Problem` and a student text: `solve`, `refine`,
`refine_style_aligned` (SAR), `locate_error` and `repair_step`.
"""
