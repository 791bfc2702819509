//! The only module that speaks to Docker (bollard).
