//! Input validation with the Go library's codes and messages (`pkg/utils`).

use crate::error::CniError;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// The spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn valid_name_chars(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Container ID: empty → code 3 "missing containerID"; bad characters → code 4.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::unknown_container("missing containerID"));
    }
    if !valid_name_chars(id) {
        return Err(CniError::invalid_env("invalid characters in containerID").with_details(id));
    }
    Ok(())
}

/// Network name: empty or bad characters → code 7.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config("missing network name"));
    }
    if !valid_name_chars(name) {
        return Err(
            CniError::invalid_config("invalid characters found in network name").with_details(name),
        );
    }
    Ok(())
}

/// Interface name (kernel `dev_valid_name`): non-empty, ≤ 15 bytes, not "." or "..",
/// no '/', ':' or whitespace. Violations are code 4.
pub fn validate_interface_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_env("interface name is empty"));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(
            CniError::invalid_env("interface name is too long").with_details(format!(
                "interface name should be less than {} characters",
                MAX_IFNAME_LEN + 1
            )),
        );
    }
    if name == "." || name == ".." {
        return Err(CniError::invalid_env("interface name is . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(CniError::invalid_env(
            "interface name contains / or : or whitespace characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for ok in [
            "a",
            "0",
            "abc-DEF_1.2",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_container_id("").unwrap_err().code, 3);
        for bad in ["-a", ".a", "_a", "a/b", "a b", "a:b", "é", "a\n"] {
            let e = validate_container_id(bad).unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str(), e.details.as_str()),
                (4, "invalid characters in containerID", bad)
            );
        }
    }

    #[test]
    fn network_names() {
        assert!(validate_network_name("mynet-1.x_y").is_ok());
        assert_eq!(validate_network_name("").unwrap_err().code, 7);
        let e = validate_network_name("my net").unwrap_err();
        assert_eq!((e.code, e.details.as_str()), (7, "my net"));
        assert_eq!(validate_network_name("/etc").unwrap_err().code, 7);
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "a", "123456789012345", "net-1.2_x", "é"] {
            assert!(validate_interface_name(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "interface name is empty"),
            ("1234567890123456", "interface name is too long"),
            ("ééééééééé", "interface name is too long"),
            (".", "interface name is . or .."),
            ("..", "interface name is . or .."),
            (
                "a/b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a:b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a b",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a\tb",
                "interface name contains / or : or whitespace characters",
            ),
            (
                "a\u{a0}b",
                "interface name contains / or : or whitespace characters",
            ),
        ];
        for (name, msg) in cases {
            let e = validate_interface_name(name).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (4, msg), "{name:?}");
        }
        assert_eq!(
            validate_interface_name("1234567890123456")
                .unwrap_err()
                .details,
            "interface name should be less than 16 characters"
        );
    }
}
