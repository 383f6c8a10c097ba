//! `mc-tests`: the testbed.
