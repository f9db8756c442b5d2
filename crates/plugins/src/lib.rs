//! Shared pieces of the CNI plugins.
