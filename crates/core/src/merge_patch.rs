//! JSON Merge Patch (RFC 7396). Hand-written because the algorithm is the RFC's ten-line
//! pseudocode; a crate would add a dependency tree for it.

use serde_json::Value;

/// Applies `patch` to `target` in place: `null` members delete keys, objects merge
/// recursively, anything else replaces.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch_members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_members) = target else { unreachable!("made an object above") };
    for (key, patch_value) in patch_members {
        if patch_value.is_null() {
            target_members.remove(key);
        } else {
            apply(target_members.entry(key.clone()).or_insert(Value::Null), patch_value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn check(target: serde_json::Value, patch: serde_json::Value, expect: serde_json::Value) {
        let mut merged = target;
        super::apply(&mut merged, &patch);
        assert_eq!(merged, expect);
    }

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn rfc_7396_examples() {
        check(json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"}));
        check(json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"}));
        check(json!({"a":"b"}), json!({"a":null}), json!({}));
        check(json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"}));
        check(json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"}));
        check(json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]}));
        check(json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}}));
        check(json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]}));
        check(json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"]));
        check(json!({"a":"b"}), json!(["c"]), json!(["c"]));
        check(json!({"a":"foo"}), json!(null), json!(null));
        check(json!({"a":"foo"}), json!("bar"), json!("bar"));
        check(json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1}));
        check(json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"}));
        check(json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}}));
    }
}
