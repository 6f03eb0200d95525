"""The built-in lab: everything an experiment needs on a laptop CPU, with no model hub.

- `world`: deterministic arithmetic word problems with computation graphs (`load_lab_problems`);
- `styles`: the student's native writing style and the oracle's polished one;
- `checker` / `reward`: first wrong step of any trace, and the process reward built on it;
- `student`: a tiny Qwen2 pretrained on CPU in the student's style (`ensure_student`, `lab:student`);
- `oracle`: the programmatic oracle and its Engine (`LabOracleEngine`, `lab:oracle`).
"""
