//! Lab: topology files, bring-up, reachability matrix, tear-down.
