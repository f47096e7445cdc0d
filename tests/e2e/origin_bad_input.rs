//! Hostile and broken uploads against the real origin over TCP: each gets a clear 4xx naming the
//! problem, and the database is byte-for-byte what it was (rows counted straight from it).

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_both_backends;
use crate::origin_flows::{start, upload_form};
use outpost_e2e::{Backend, OriginProcess, fixtures, http_client};

on_both_backends!(bad_uploads_get_clear_errors_and_change_nothing);

/// A bad upload and the answer it must get.
struct Case {
    what: &'static str,
    filename: &'static str,
    bytes: fn() -> Vec<u8>,
    status: StatusCode,
    code: &'static str,
    /// A phrase the error message must contain.
    says: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        what: "text renamed .jpg",
        filename: "holiday.jpg",
        bytes: fixtures::text_file,
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported_type",
        says: "not a JPEG or PNG",
    },
    Case {
        what: "truncated JPEG",
        filename: "cut.jpg",
        bytes: fixtures::truncated_jpeg,
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "corrupt_image",
        says: "truncated",
    },
    Case {
        what: "30000×30000 PNG",
        filename: "bomb.png",
        bytes: fixtures::png_bomb,
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "image_too_large",
        says: "30000×30000",
    },
    Case {
        what: "hostile filename, not an image",
        filename: "../../../etc/passwd",
        bytes: || b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported_type",
        says: "JPEG",
    },
];

async fn api_error(res: reqwest::Response) -> anyhow::Result<(StatusCode, String, String)> {
    let status = res.status();
    let body: Value = res.json().await.context("error body is JSON")?;
    let code = body["error"]["code"]
        .as_str()
        .context("error.code")?
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .context("error.message")?
        .to_owned();
    Ok((status, code, message))
}

async fn bad_uploads_get_clear_errors_and_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let (db, origin) = start(backend, "").await?;
    let client = http_client();
    // One good image first, so "unchanged" is not just "still empty".
    let res = client
        .post(origin.url("/api/images"))
        .multipart(upload_form(
            "good",
            "good.jpg",
            fixtures::fixture("raccoon-small.jpg"),
        ))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CREATED);
    let before = db.counts().await?;

    for case in CASES {
        let res = client
            .post(origin.url("/api/images"))
            .multipart(upload_form(case.what, case.filename, (case.bytes)()))
            .send()
            .await?;
        let (status, code, message) = api_error(res).await?;
        assert_eq!(
            (status, code.as_str()),
            (case.status, case.code),
            "{}: {message}",
            case.what
        );
        assert!(
            message.contains(case.says),
            "{}: {message:?} should say {:?}",
            case.what,
            case.says
        );
        // The browser form gets the same status, as an HTML page.
        let page = client
            .post(origin.url("/upload"))
            .multipart(upload_form(case.what, case.filename, (case.bytes)()))
            .send()
            .await?;
        assert_eq!(page.status(), case.status, "{} via the form", case.what);
        assert!(
            page.text().await?.contains("<h1>"),
            "{}: an HTML error page",
            case.what
        );
    }

    // Names: bytes that are not UTF-8 are refused, not stored as U+FFFD; so are bidirectional
    // controls that make a name read as something else.
    let names: [(reqwest::multipart::Part, &str); 2] = [
        (
            reqwest::multipart::Part::bytes(b"caf\xe9 \xff".to_vec()),
            "not valid UTF-8",
        ),
        (
            reqwest::multipart::Part::text("invoice\u{202E}gpj.exe"),
            "bidirectional",
        ),
    ];
    for (name, says) in names {
        let form = reqwest::multipart::Form::new().part("name", name).part(
            "file",
            reqwest::multipart::Part::bytes(fixtures::fixture("raccoon-small.jpg"))
                .file_name("x.jpg"),
        );
        let res = client
            .post(origin.url("/api/images"))
            .multipart(form)
            .send()
            .await?;
        let (status, code, message) = api_error(res).await?;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "bad_name")
        );
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }

    let (status, code, message) = fifty_megabytes(&origin).await?;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large"),
        "{message}"
    );
    assert!(message.contains("10 MiB"), "{message}");

    assert_eq!(db.counts().await?, before, "the database is unchanged");
    // And the origin still serves.
    assert_eq!(
        client.get(origin.url("/api/images")).send().await?.status(),
        StatusCode::OK
    );
    Ok(())
}

/// Sends a 50 MB multipart upload over a raw socket while reading the answer, as a browser does:
/// the origin answers 413 from `Content-Length` without reading 50 MB, and we must be able to read
/// that answer even though we are still sending.
async fn fifty_megabytes(origin: &OriginProcess) -> anyhow::Result<(StatusCode, String, String)> {
    const SIZE: usize = 50 * 1024 * 1024;
    let boundary = "xyzzy";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nhuge\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() + SIZE + tail.len();
    let stream = tokio::net::TcpStream::connect(origin.addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    let request = format!(
        "POST /api/images HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n{head}",
        origin.addr
    );
    let writer = tokio::spawn(async move {
        wr.write_all(request.as_bytes()).await?;
        let chunk = vec![0xFFu8; 1024 * 1024];
        for _ in 0..SIZE / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        wr.write_all(tail.as_bytes()).await?;
        Ok::<_, std::io::Error>(())
    });
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut response))
        .await
        .context("no answer to the 50 MB upload within 30 s")??;
    // The origin stopped reading; our writer may see a reset. Either way it must end.
    let _ = writer.await;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().context("empty response")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .context("status")?
        .parse::<u16>()?;
    let body = text.split("\r\n\r\n").nth(1).context("no body")?;
    let json: Value =
        serde_json::from_str(body.trim()).with_context(|| format!("body {body:?}"))?;
    Ok((
        StatusCode::from_u16(status)?,
        json["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}
