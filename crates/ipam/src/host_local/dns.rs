//! `resolvConf`: nameserver/domain/search/options like the reference's parser.

use std::path::Path;

use crate::types::Dns;

/// Lines are trimmed; `#`/`;` comments and lines with fewer than two fields are
/// skipped; `domain` keeps the last value; search/options accumulate.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(key), Some(first)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let rest = fields.iter().skip(1).map(|s| s.to_string());
        match *key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = Some(first.to_string()),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

pub fn read_resolv_conf(path: &Path) -> std::io::Result<Dns> {
    Ok(parse_resolv_conf(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_reference() {
        let d = parse_resolv_conf(
            "# c\n; c\nnameserver 198.18.0.53\n  nameserver   2001:db8::53 extra\ndomain a.example\ndomain b.example\nsearch x.example y.example\nsearch z.example\noptions ndots:2 edns0\nbogus\nsortlist 1\n",
        );
        assert_eq!(d.nameservers, ["198.18.0.53", "2001:db8::53"]);
        assert_eq!(d.domain.as_deref(), Some("b.example"));
        assert_eq!(d.search, ["x.example", "y.example", "z.example"]);
        assert_eq!(d.options, ["ndots:2", "edns0"]);
    }
}
