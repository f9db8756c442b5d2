//! Deserializers that mirror Go's lenient decoding (null lists, empty strings, zero ints).

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

/// `null` or absent → `T::default()` (Go decodes `null` into a nil slice).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `""` → `None` (Go's `omitempty` strings cannot tell the two apart).
pub(crate) fn empty_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// `0` → `None` (Go's `int` + `omitempty` fields).
pub(crate) fn zero_none<'de, D>(d: D) -> Result<Option<u32>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<u32>::deserialize(d)?.filter(|v| *v != 0))
}

/// An IP string where `""` means none (Go `net.IP` text decoding).
pub(crate) fn ip_opt<'de, D>(d: D) -> Result<Option<IpAddr>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid IP address: {s}"))),
    }
}
