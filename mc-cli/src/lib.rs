//! `mc-cli`: the library behind the `mc` command.
