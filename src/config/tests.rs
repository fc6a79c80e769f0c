use super::*;

#[test]
fn empty_is_tempo() {
    assert_eq!(Config::from_json(b"").unwrap(), Config::preset(Compat::Tempo));
    assert_eq!(Config::from_json(b"{}").unwrap(), Config::preset(Compat::Tempo));
}

#[test]
fn contrib_preset_defaults() {
    let c = Config::from_json(br#"{"compat":"contrib"}"#).unwrap();
    assert_eq!(c.wait, Duration::from_secs(2));
    assert_eq!(c.max_items, 1000);
    assert_eq!(c.histogram_buckets.len(), 16);
    assert!(c.failed_label);
    assert_eq!(c.virtual_server_fallback.as_deref(), Some("unknown"));
}

#[test]
fn override_on_top_of_preset() {
    let c =
        Config::from_json(br#"{"compat":"contrib","wait":"1m30s","histogram_buckets":[0.04],"dimensions":["a.b"]}"#)
            .unwrap();
    assert_eq!(c.wait, Duration::from_secs(90));
    assert_eq!(c.histogram_buckets, vec![0.04]);
    assert_eq!(c.dimensions, vec!["a.b".to_string()]);
    assert!(c.failed_label);
}

#[test]
fn errors_name_the_key() {
    let e = Config::from_json(br#"{"wait":"ten seconds"}"#).unwrap_err();
    assert!(e.to_string().starts_with("config key `wait`:"), "{e}");
    let e = Config::from_json(br#"{"store_ttl":"577h"}"#).unwrap_err();
    assert_eq!(e.to_string(), "config key `store_ttl`: must be at most 24 days (576h)");
    assert_eq!(Config::from_json(br#"{"wait":"576h"}"#).unwrap().wait, MAX_WAIT);
    let e = Config::from_json(br#"{"dimensions":["ok", 3]}"#).unwrap_err();
    assert!(e.to_string().starts_with("config key `dimensions[1]`:"), "{e}");
    for (dims, key, message) in [
        (r#"["client"]"#, "dimensions[0]", r#""client" would be the label `client`, which servicemap writes itself"#),
        (r#"["ok","le"]"#, "dimensions[1]", r#""le" would be the label `le`, which servicemap writes itself"#),
        (r#"["a.b","a_b"]"#, "dimensions[1]", r#""a_b" would be the label `a_b`, as "a.b" is already"#),
        (
            r#"["__name__"]"#,
            "dimensions[0]",
            r#""__name__" would be the label `__name__`: names starting with `__` are reserved"#,
        ),
    ] {
        let e = Config::from_json(format!(r#"{{"dimensions":{dims}}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), format!("config key `{key}`: {message}"));
    }
    // With the prefix, `client` is `client_client`: no clash.
    assert!(Config::from_json(br#"{"compat":"contrib","dimensions":["client"]}"#).is_ok());
    let e = Config::from_json(br#"{"max_itmes":3}"#).unwrap_err();
    assert_eq!(e.to_string(), "config key `max_itmes`: unknown key");
    let e = Config::from_json(br#"{"histogram_buckets":[1, 0.5]}"#).unwrap_err();
    assert_eq!(e.to_string(), "config key `histogram_buckets[1]`: bucket bounds must be strictly increasing");
    let e = Config::from_json(br#"{"compat":"jaeger"}"#).unwrap_err();
    assert!(e.to_string().starts_with("config key `compat`:"), "{e}");
    let e = Config::from_json(b"[1]").unwrap_err();
    assert!(e.to_string().starts_with("config key `(document)`:"), "{e}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
    assert_eq!(parse_duration("1ns"), Some(Duration::from_nanos(1)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("-1s"), None);
}
