//! The API test suite: every test starts the real application on port 0 (in this process,
//! or as the real binary where a process must die) and talks HTTP to it.

mod errors;
mod helpers;
mod process;
mod service;
mod sessions;
