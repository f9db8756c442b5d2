//! The CNI protocol (spec 1.1.0): types, versions, errors, skel, delegation.
