//! Tests of the qdrant-edge test server through `qdrant-client`, the client our backend uses.

mod binary;
mod collections;
mod concurrency;
mod helpers;
mod lifecycle;
mod optimize;
mod points;
