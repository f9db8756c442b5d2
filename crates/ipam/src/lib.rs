//! IPAM implementations: host-local, static.
