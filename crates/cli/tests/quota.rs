//! `agora quota replay` and `agora quota guarantee`.

mod common;
use common::*;

#[test]
fn replay_prints_one_line_per_op() {
    let dir = temp_dir("quota");
    let trace = dir.join("t.jsonl");
    std::fs::write(
        &trace,
        concat!(
            "{\"op\":\"charge\",\"user\":\"a\",\"amount\":512}\n",
            "{\"op\":\"charge\",\"user\":\"b\",\"amount\":1000}\n",
            "{\"op\":\"charge\",\"user\":\"b\",\"amount\":2,\"slot\":\"fds\"}\n",
            "{\"op\":\"discharge\",\"user\":\"a\",\"amount\":12}\n",
            "{\"op\":\"discharge\",\"user\":\"a\",\"amount\":1000}\n",
            "{\"op\":\"discharge_all\",\"user\":\"a\"}\n",
        ),
    )
    .unwrap();
    let out =
        run(&["quota", "replay", "--allocator", "polynomial", "--total", "bytes=1024,fds=8", trace.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    // A2(0) = 2: a may take up to 512 of 1024.
    assert_eq!(lines[0], serde_json::json!({"ok": true, "share": 512, "remaining": 512, "claimants": 1}));
    // b: A2(1) = 3, (0 + 1000)·3 > 512: refused, nothing changes.
    assert_eq!(lines[1]["ok"], false);
    assert_eq!((lines[1]["share"].as_u64(), lines[1]["remaining"].as_u64()), (Some(0), Some(512)));
    assert_eq!(lines[2], serde_json::json!({"ok": true, "share": 2, "remaining": 6, "claimants": 2}));
    assert_eq!(lines[3]["share"], 500);
    assert_eq!(lines[4]["ok"], false, "discharging more than held is refused");
    assert_eq!(lines[5], serde_json::json!({"ok": true, "share": 0, "remaining": 1024, "claimants": 1}));
}

#[test]
fn malformed_lines_are_named_and_stop_the_replay() {
    let dir = temp_dir("quota-bad");
    let trace = dir.join("t.jsonl");
    for (body, words) in [
        (
            "{\"op\":\"charge\",\"user\":\"a\",\"amount\":5}\n{\"op\":\"charge\",\"user\":\"a\"}\n",
            "t.jsonl:2: not a quota op",
        ),
        ("{\"op\":\"charge\",\"user\":\"a\",\"amount\":-5}\n", "t.jsonl:1: not a quota op"),
        ("{\"op\":\"steal\",\"user\":\"a\"}\n", "t.jsonl:1"),
        ("{\"op\":\"charge\",\"user\":\"a\",\"amount\":5,\"slot\":\"gpu\"}\n", "t.jsonl:1: no slot \"gpu\""),
    ] {
        std::fs::write(&trace, body).unwrap();
        let out = run(&["quota", "replay", "--total", "bytes=100", trace.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(words), "{words:?} in {stderr}");
    }
    let out = run(&["quota", "replay", "--total", "bytes", trace.to_str().unwrap()]);
    assert!(text(&out).1.contains("is not SLOT=N"));
}

#[test]
fn guarantee_search_finds_the_bound_holding() {
    for a in ["exponential", "polynomial", "quasilinear"] {
        let out = run(&["quota", "guarantee", "--allocator", a, "--max-n", "40"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{a}: {stderr}");
        let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 41);
        assert!(rows.iter().all(|r| r["holds"] == true), "{a}");
        // The search is adversarial: the newcomer is left with less than the whole pool.
        assert!(rows[10]["worst_share"].as_f64().unwrap() < 0.5);
    }
}
