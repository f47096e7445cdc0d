#[test]
fn probe() {
    for body in [
        &br#"{"url": ["x"]}"#[..],
        br#"{"urls": "x"}"#,
        br#"{"urls": [1]}"#,
        br#""#,
        br#"{"urls": ["a"],"#,
        br#"{"all": "yes"}"#,
        br#"[]"#,
    ] {
        let de = &mut serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, edge::purge::PurgeRequest>(de) {
            Ok(r) => println!("{} => ok {r:?}", String::from_utf8_lossy(body)),
            Err(e) => println!("{} => path {:?} inner {}", String::from_utf8_lossy(body), e.path().to_string(), e.into_inner()),
        }
    }
    let u: http::Uri = "http://images.example".parse().unwrap();
    println!("path {:?}", u.path());
    println!("{}", serde_json::to_string_pretty(&edge::purge::Receipt::default()).unwrap());
}
#[test]
fn probe2() {
    for body in [&br#"{"tags": ["a"]} garbage"#[..], br#"[[],[],[],true]"#, br#"{"urls":["a"],"urls":["b"]}"#, br#""str""#, br#"{"id": null}"#] {
        let de = &mut serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, edge::purge::PurgeRequest>(de) {
            Ok(r) => println!("{} => ok {r:?}", String::from_utf8_lossy(body)),
            Err(e) => println!("{} => path {:?} inner {}", String::from_utf8_lossy(body), e.path().to_string(), e.into_inner()),
        }
    }
}
