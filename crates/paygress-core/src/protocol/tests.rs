use super::*;

#[test]
fn seed_spawn_request_parses() {
    let json = r#"{"cashu_token":"cashuBxyz","ssh_username":"alice","pod_image":"linuxserver/openssh-server:latest","duration_minutes":120}"#;
    let r: SpawnRequest = serde_json::from_str(json).unwrap();
    assert_eq!(r.duration_minutes, Some(120));
    assert_eq!(r.ssh_username.as_deref(), Some("alice"));
    assert_eq!(r.cashu_token.expose(), "cashuBxyz");
}

#[test]
fn unknown_fields_are_rejected() {
    let json = r#"{"cashu_token":"cashuBxyz","duration_minute":120}"#;
    assert!(serde_json::from_str::<SpawnRequest>(json).is_err());
}

#[test]
fn reply_keeps_seed_field_names() {
    let reply = Reply::AccessDetails(AccessDetails {
        pod_name: "ssh-pod-abc12345".parse().unwrap(),
        ssh_username: "alice".into(),
        ssh_password: Password::new("pw"),
        ssh_host: "localhost".into(),
        ssh_port: 2222,
        node_port: Some(30022),
        expires_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        duration_seconds: 60,
        tier: "standard".into(),
        instructions: vec![],
        change_token: None,
        host_keys: vec![],
        password_login: true,
    });
    let v: serde_json::Value = serde_json::to_value(&reply).unwrap();
    assert_eq!(v["type"], "access_details");
    assert_eq!(v["pod_name"], "ssh-pod-abc12345");
    assert_eq!(v["ssh_password"], "pw");
    assert_eq!(v["node_port"], 30022);
    assert_eq!(v["expires_at"], "2026-01-01T00:00:00Z");
    let back: Reply = serde_json::from_value(v).unwrap();
    assert_eq!(back, reply);
}

#[test]
fn error_reply_shape() {
    let v = serde_json::to_value(Reply::error(ErrorCode::PodNotFound, "no such pod")).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"error","code":"pod_not_found","message":"no such pod"})
    );
}
