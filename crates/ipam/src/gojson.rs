//! Go's `encoding/json` matches object keys to struct fields case-insensitively
//! when there is no exact match (`"DataDir"` fills `dataDir`). The reference
//! configs are decoded that way, so keys are folded onto the canonical names
//! before serde sees them.

use serde_json::{Map, Value};

/// Field names per object kind, for the configs this crate reads.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    HostLocalNet,
    HostLocalIpam,
    StaticNet,
    StaticIpam,
}

const RANGE: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];
const ROUTE: &[&str] = &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];
const IPS: &[&str] = &["ips"];
const DNS: &[&str] = &["nameservers", "domain", "search", "options"];
const ADDRESS: &[&str] = &["address", "gateway"];

/// Rename keys of `obj` that case-insensitively equal one of `fields` (and have
/// no exact counterpart) to the field's spelling.
fn fold(obj: &mut Map<String, Value>, fields: &[&str]) {
    let keys: Vec<String> = obj.keys().cloned().collect();
    for k in keys {
        if fields.contains(&k.as_str()) {
            continue;
        }
        if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
            if !obj.contains_key(*f) {
                if let Some(v) = obj.remove(&k) {
                    obj.insert((*f).to_string(), v);
                }
            }
        }
    }
}

fn fold_at(v: Option<&mut Value>, fields: &[&str]) -> Option<()> {
    fold(v?.as_object_mut()?, fields);
    Some(())
}

fn each(v: Option<&mut Value>, f: impl Fn(&mut Value)) {
    if let Some(Value::Array(items)) = v {
        items.iter_mut().for_each(f);
    }
}

fn range_sets(v: Option<&mut Value>) {
    each(v, |set| each(Some(set), |r| _ = fold_at(Some(r), RANGE)));
}

fn routes(v: Option<&mut Value>) {
    each(v, |r| _ = fold_at(Some(r), ROUTE));
}

fn args_and_runtime(obj: &mut Map<String, Value>) {
    if let Some(args) = obj.get_mut("args").and_then(Value::as_object_mut) {
        fold(args, &["cni"]);
        fold_at(args.get_mut("cni"), IPS);
    }
}

/// Fold the keys of a whole network config in place.
pub(crate) fn normalize(value: &mut Value, shape: Shape) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    match shape {
        Shape::HostLocalNet => {
            fold(
                obj,
                &["name", "cniVersion", "ipam", "runtimeConfig", "args"],
            );
            args_and_runtime(obj);
            if let Some(rc) = obj.get_mut("runtimeConfig").and_then(Value::as_object_mut) {
                fold(rc, &["ipRanges", "ips"]);
                range_sets(rc.get_mut("ipRanges"));
            }
            if let Some(ipam) = obj.get_mut("ipam") {
                normalize(ipam, Shape::HostLocalIpam);
            }
        }
        Shape::HostLocalIpam => {
            let mut fields = vec!["type", "routes", "dataDir", "resolvConf", "ranges"];
            fields.extend_from_slice(RANGE);
            fold(obj, &fields);
            routes(obj.get_mut("routes"));
            range_sets(obj.get_mut("ranges"));
        }
        Shape::StaticNet => {
            fold(
                obj,
                &["name", "cniVersion", "ipam", "runtimeConfig", "args"],
            );
            args_and_runtime(obj);
            fold_at(obj.get_mut("runtimeConfig"), IPS);
            if let Some(ipam) = obj.get_mut("ipam") {
                normalize(ipam, Shape::StaticIpam);
            }
        }
        Shape::StaticIpam => {
            fold(obj, &["type", "routes", "addresses", "dns"]);
            routes(obj.get_mut("routes"));
            each(obj.get_mut("addresses"), |a| _ = fold_at(Some(a), ADDRESS));
            fold_at(obj.get_mut("dns"), DNS);
        }
    }
}

/// Parse JSON with Go's key matching into `T`.
pub(crate) fn from_slice<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    shape: Shape,
) -> Result<T, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    normalize(&mut v, shape);
    serde_json::from_value(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folds_like_go() {
        let mut v: Value = serde_json::from_str(
            r#"{"Name":"n","IPAM":{"DataDir":"/x","Ranges":[[{"Subnet":"198.18.0.0/24","RANGESTART":"198.18.0.9"}]],"dataDir2":1},
               "RuntimeConfig":{"IPs":["198.18.0.5"]},"Args":{"CNI":{"IPS":["198.18.0.6"]}}}"#,
        )
        .unwrap();
        normalize(&mut v, Shape::HostLocalNet);
        assert_eq!(v["name"], "n");
        assert_eq!(v["ipam"]["dataDir"], "/x");
        assert_eq!(v["ipam"]["dataDir2"], 1);
        assert_eq!(v["ipam"]["ranges"][0][0]["rangeStart"], "198.18.0.9");
        assert_eq!(v["runtimeConfig"]["ips"][0], "198.18.0.5");
        assert_eq!(v["args"]["cni"]["ips"][0], "198.18.0.6");
        // An exact key wins over a folded one.
        let mut v: Value =
            serde_json::from_str(r#"{"ipam":{"dataDir":"a","DATADIR":"b"}}"#).unwrap();
        normalize(&mut v, Shape::HostLocalNet);
        assert_eq!(v["ipam"]["dataDir"], "a");
    }
}
