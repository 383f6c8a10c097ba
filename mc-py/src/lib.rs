//! `mc-py`: the Python module `mc`.
