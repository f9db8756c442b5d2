//! SVG pictures of parents, children, modes, namespaces and addresses.
