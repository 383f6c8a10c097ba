//! `mc-gateway`: the mTLS gateway of a target cluster.
