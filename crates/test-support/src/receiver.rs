//! A webhook receiver on a loopback port whose answer can be switched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait::eventually;

#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    /// Answers 500 this many times, then 200.
    FailFirst(u32),
    Gone,
    /// 302 to another URL.
    Redirect(String),
    /// 503 with `Retry-After: n`, then 200.
    RetryAfterOnce(u64),
    /// Holds the request this long before answering 200.
    Hang(Duration),
    /// Accepts the request and never answers, until [`Receiver::release`] (then 200).
    Hold,
    /// This status with this body, every time.
    Status(u16, String),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
    pub at: std::time::Instant,
    /// The same moment on the wall clock, to compare with the gateway's timestamps.
    pub at_wall: chrono::DateTime<chrono::Utc>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    got: Arc<Mutex<Vec<Received>>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Arc<Mutex<(usize, usize)>>,
    /// Lets the requests [`Answer::Hold`] holds go.
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Counts a request as answered when dropped (also when the client gave up waiting).
struct Answered(Arc<Mutex<(usize, usize)>>);

impl Drop for Answered {
    fn drop(&mut self) {
        if let Ok(mut f) = self.0.lock() {
            f.0 = f.0.saturating_sub(1);
        }
    }
}

impl Receiver {
    pub fn start(answer: Answer) -> Receiver {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let answer = Arc::new(Mutex::new(answer));
        let got: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
        let in_flight: Arc<Mutex<(usize, usize)>> = Arc::default();
        let released = Arc::new(tokio::sync::watch::channel(false).0);
        let (a, g, f, r) = (
            answer.clone(),
            got.clone(),
            in_flight.clone(),
            released.clone(),
        );
        let server = HttpServer::new(move || {
            let (a, g, f, r) = (a.clone(), g.clone(), f.clone(), r.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (a, g, f, mut r) = (a.clone(), g.clone(), f.clone(), r.subscribe());
                async move {
                    {
                        let mut f = f.lock().unwrap();
                        f.0 += 1;
                        f.1 = f.1.max(f.0);
                    }
                    let _answered = Answered(f);
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect();
                    g.lock().unwrap().push(Received {
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        at: std::time::Instant::now(),
                        at_wall: chrono::Utc::now(),
                    });
                    let answer = a.lock().unwrap().clone();
                    match answer {
                        Answer::Ok => HttpResponse::Ok().body("thanks"),
                        Answer::FailFirst(0) => HttpResponse::Ok().finish(),
                        Answer::FailFirst(n) => {
                            *a.lock().unwrap() = Answer::FailFirst(n - 1);
                            HttpResponse::InternalServerError().body("not yet")
                        }
                        Answer::Gone => HttpResponse::Gone().finish(),
                        Answer::Redirect(to) => HttpResponse::Found()
                            .insert_header(("Location", to))
                            .finish(),
                        Answer::RetryAfterOnce(secs) => {
                            *a.lock().unwrap() = Answer::Ok;
                            HttpResponse::ServiceUnavailable()
                                .insert_header(("Retry-After", secs.to_string()))
                                .finish()
                        }
                        Answer::Hang(d) => {
                            tokio::time::sleep(d).await;
                            HttpResponse::Ok().finish()
                        }
                        Answer::Hold => {
                            let _ = r.wait_for(|go| *go).await;
                            HttpResponse::Ok().finish()
                        }
                        Answer::Status(status, body) => HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).unwrap(),
                        )
                        .body(body),
                    }
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            answer,
            got,
            in_flight,
            released,
        }
    }

    /// Answers the requests held by [`Answer::Hold`], and any later ones at once.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// How many requests it is answering (or holding) now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|f| f.0).unwrap_or(0)
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().map(|f| f.1).unwrap_or(0)
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.got.lock().map(|g| g.len()).unwrap_or(0)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(
            &format!("{n} webhook request(s)"),
            Duration::from_secs(15),
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// Checks a delivery's signature with RustCrypto's HMAC, independently of the gateway's own
/// code (which uses ring), exactly as the Standard Webhooks specification describes.
pub fn verify_signature(secret: &str, received: &Received) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let id = &received.headers["webhook-id"];
    let ts = &received.headers["webhook-timestamp"];
    let now = chrono::Utc::now().timestamp();
    let sent: i64 = ts.parse().unwrap();
    if (now - sent).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", received.body).as_bytes());
    let expected = b64.encode(mac.finalize().into_bytes());
    received.headers["webhook-signature"]
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}
