//! Validation of names that become path components (network name, container
//! ID) and of interface names, with the reference's rules and messages
//! (cni `pkg/utils`). Refusing here means nothing is ever written outside dataDir.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("missing network name")]
    MissingNetworkName,
    #[error("invalid characters found in network name: {0:?}")]
    NetworkName(String),
    #[error("missing containerID")]
    MissingContainerId,
    #[error("invalid characters in containerID: {0:?}")]
    ContainerId(String),
    #[error("interface name is empty")]
    EmptyIfName,
    #[error("interface name is too long: {0:?}")]
    IfNameTooLong(String),
    #[error("interface name is . or ..")]
    IfNameDots,
    #[error("interface name contains / or : or whitespace characters: {0:?}")]
    IfNameChars(String),
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`: no `/`, no NUL, cannot be `.` or `..`.
fn is_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

pub fn validate_network_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::MissingNetworkName);
    }
    if !is_cni_name(name) {
        return Err(NameError::NetworkName(name.to_string()));
    }
    Ok(())
}

pub fn validate_container_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() {
        return Err(NameError::MissingContainerId);
    }
    if !is_cni_name(id) {
        return Err(NameError::ContainerId(id.to_string()));
    }
    Ok(())
}

/// Linux `dev_valid_name` as the reference checks it (max 15 bytes).
pub fn validate_ifname(ifname: &str) -> Result<(), NameError> {
    if ifname.is_empty() {
        return Err(NameError::EmptyIfName);
    }
    if ifname.len() > 15 {
        return Err(NameError::IfNameTooLong(ifname.to_string()));
    }
    if ifname == "." || ifname == ".." {
        return Err(NameError::IfNameDots);
    }
    if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(NameError::IfNameChars(ifname.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        for bad in ["", "..", ".", "../x", "a/b", "a\0b", "-x", "a b", ".hidden"] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
        for good in ["net1", "a.b-c_d", "0abc"] {
            assert!(validate_network_name(good).is_ok());
            assert!(validate_container_id(good).is_ok());
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("0123456789abcde").is_ok());
    }
}
