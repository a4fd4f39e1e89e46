//! The simulator's routes. EM treats paths and query-parameter names case-insensitively, so
//! everything is matched here by hand on the lower-cased path instead of through actix's router.

use std::time::Instant;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use uuid::Uuid;

use super::body::{self, Element, Kind, Schema, optional, required};
use super::query::{self, Record};
use super::render::Node;
use super::state::{Change, Gateway, GatewayChange, NetworkMode, Pool, PoolChange, World};
use super::views::{self, Hrefs};
use super::{Faults, Sim};

mod tenants;

/// What a handler answers, before it is written as XML or JSON.
pub enum Reply {
    Doc(StatusCode, Node),
    /// A document already written as EM's XML (asked for as XML).
    Xml(StatusCode, String),
    NoContent,
    Error(StatusCode, String),
    LoggedOn {
        token: String,
        session_id: Uuid,
        node: Box<Node>,
    },
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply::Error(status, message.into())
}

fn bad_request(message: impl Into<String>) -> Reply {
    error(StatusCode::BAD_REQUEST, message)
}

fn not_found(message: impl Into<String>) -> Reply {
    error(StatusCode::NOT_FOUND, message)
}

const AUTH_MESSAGE: &str = "Authentication failed: the session is missing or expired.";

/// One request as the handlers see it.
pub struct Call<'a> {
    pub method: &'a Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub token: Option<String>,
    pub basic: Option<(String, String)>,
    pub json_body: bool,
    /// The answer is wanted as JSON (`Accept`), not XML.
    pub json_answer: bool,
    pub body: &'a [u8],
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn entity_format(&self) -> bool {
        self.param("format")
            .is_some_and(|f| f.eq_ignore_ascii_case("Entity") || f.eq_ignore_ascii_case("Entities"))
    }
}

pub async fn dispatch(req: HttpRequest, body: web::Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let path = req.path().to_ascii_lowercase();
    if path.starts_with("/_sim") {
        return super::control::handle(&req, &body, &sim);
    }
    let faults = sim.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
    }
    let json = accepts_json(&req);
    let camel = faults.camel_case_json;
    let error_next = faults.error_next > 0 && sim.take_error_next();
    if error_next || (faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate) {
        sim.world().counters.requests_failed_by_fault += 1;
        let status =
            StatusCode::from_u16(faults.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        if status == StatusCode::REQUEST_TIMEOUT {
            // As HTTP.sys answers a request it did not take in: its own page, not EM's Error.
            return HttpResponse::RequestTimeout()
                .content_type("text/html")
                .body("<h2>Request Timeout</h2> (fault injection)");
        }
        return write(
            error(
                status,
                "The service is temporarily unavailable (fault injection).",
            ),
            json,
            camel,
        );
    }
    if faults.garbage_rate > 0.0 && fastrand::f64() < faults.garbage_rate {
        return HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body><h1>Welcome</h1>(fault injection)</body></html>");
    }
    let Some(rest) = path.strip_prefix("/api") else {
        return write(not_found("The resource was not found."), json, camel);
    };
    let call = Call {
        method: req.method(),
        segments: rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        query: form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        token: session_token(&req),
        basic: basic_credentials(&req),
        json_body: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json")),
        json_answer: json,
        body: &body,
    };
    let reply = {
        let mut world = sim.world();
        let now = Instant::now();
        world.advance(now);
        world.counters.requests += 1;
        *world
            .counters
            .requests_by_route
            .entry(route_key(&call))
            .or_default() += 1;
        let reply = route(&sim, &mut world, &faults, &call, now);
        if matches!(reply, Reply::Error(StatusCode::BAD_REQUEST, _)) {
            world.counters.protocol_violations += 1;
        }
        reply
    };
    if faults.drop_rate > 0.0 && fastrand::f64() < faults.drop_rate {
        return dropped();
    }
    write(reply, json, camel)
}

/// A response whose body fails at once: the connection closes without a complete answer,
/// after the request was processed (the worst case for a client).
fn dropped() -> HttpResponse {
    let failing = futures_util::stream::once(async {
        Err::<web::Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped (fault injection)",
        ))
    });
    HttpResponse::Ok()
        .content_type("application/xml")
        .streaming(failing)
}

fn accepts_json(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"))
}

/// EM prefers the cookie over the header when both are sent.
fn session_token(req: &HttpRequest) -> Option<String> {
    let from_cookie = req
        .headers()
        .get_all("cookie")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("X-RestSvcSessionId"))
        .map(|(_, v)| v.to_string());
    from_cookie.or_else(|| {
        req.headers()
            .get("x-restsvcsessionid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `GET /cloud/gateways/{id}` style keys for the request counters.
fn route_key(call: &Call) -> String {
    let pattern: Vec<&str> = call
        .segments
        .iter()
        .map(|s| {
            if Uuid::parse_str(s).is_ok() || s.starts_with("task-") {
                "{id}"
            } else {
                s.as_str()
            }
        })
        .collect();
    format!("{} /{}", call.method, pattern.join("/"))
}

fn write(reply: Reply, json: bool, camel: bool) -> HttpResponse {
    let (status, node, session) = match reply {
        Reply::NoContent => return HttpResponse::NoContent().finish(),
        Reply::Xml(status, xml) => {
            return HttpResponse::build(status)
                .content_type("application/xml; charset=utf-8")
                .body(xml);
        }
        Reply::Doc(status, node) => (status, node, None),
        Reply::LoggedOn {
            token,
            session_id,
            node,
        } => (StatusCode::CREATED, *node, Some((token, session_id))),
        Reply::Error(status, message) => return write_error(status, &message, json),
    };
    let mut resp = HttpResponse::build(status);
    if let Some((token, session_id)) = session {
        let location = node
            .attr_text("Href")
            .unwrap_or_else(|| session_id.to_string());
        resp.insert_header(("X-RestSvcSessionId", token.clone()))
            .insert_header((
                "Set-Cookie",
                format!("X-RestSvcSessionId={token}; Path=/api;"),
            ))
            .insert_header(("Location", location));
    }
    if json {
        resp.content_type("application/json; charset=utf-8")
            .body(node.to_json(camel).to_string())
    } else {
        resp.content_type("application/xml; charset=utf-8")
            .body(node.to_xml())
    }
}

/// EM's `Error` document. JSON keys are alphabetical with nulls, as real captures show.
fn write_error(status: StatusCode, message: &str, json: bool) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        resp.insert_header(("WWW-Authenticate", "Basic Realm=RestSvc"));
    }
    if json {
        let body = serde_json::json!({
            "FirstChanceExceptionMessage": message,
            "Message": message,
            "StackTrace": null,
            "Status": null,
            "StatusCode": status.as_u16(),
        });
        resp.content_type("application/json; charset=utf-8")
            .body(body.to_string())
    } else {
        let node = Node::new("Error")
            .attr("Message", message)
            .attr("StatusCode", status.as_u16().to_string())
            .child(Node::text("FirstChanceExceptionMessage", message));
        resp.content_type("application/xml; charset=utf-8")
            .body(node.to_xml())
    }
}

fn route(sim: &Sim, world: &mut World, faults: &Faults, call: &Call, now: Instant) -> Reply {
    let h = &sim.hrefs;
    let segs: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let m = call.method;
    match segs.as_slice() {
        [] if m == Method::GET => Reply::Doc(StatusCode::OK, views::enterprise_manager(h)),
        ["sessionmngr"] if m == Method::POST => log_on(sim, world, call, now),
        ["sessionmngr"] | [] => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
        _ => {
            let Some(token) = call.token.as_deref() else {
                return error(StatusCode::UNAUTHORIZED, AUTH_MESSAGE);
            };
            let Some(session) = world.session(token, now) else {
                return error(StatusCode::UNAUTHORIZED, AUTH_MESSAGE);
            };
            let user = session.user.clone();
            let ctx = Ctx {
                h,
                token,
                user: &user,
                faults,
                now,
            };
            authenticated(world, &ctx, call, &segs)
        }
    }
}

struct Ctx<'a> {
    h: &'a Hrefs,
    token: &'a str,
    user: &'a str,
    faults: &'a Faults,
    now: Instant,
}

fn log_on(sim: &Sim, world: &mut World, call: &Call, now: Instant) -> Reply {
    match call.param("v").map(str::to_ascii_lowercase).as_deref() {
        None | Some("latest" | "v1_5" | "v1_6" | "v1_7") => {}
        Some(other) => return bad_request(format!("Unsupported API version [{other}].")),
    }
    let Some((user, password)) = &call.basic else {
        world.counters.logons_refused += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "Authorization header expected but not found.",
        );
    };
    if !sim.is_account(user, password) {
        world.counters.logons_refused += 1;
        return error(StatusCode::UNAUTHORIZED, "Invalid user name or password.");
    }
    let (token, session_id) = world.log_on(user, now);
    Reply::LoggedOn {
        token,
        session_id,
        node: Box::new(views::logon_session(&sim.hrefs, session_id, user)),
    }
}

fn authenticated(world: &mut World, ctx: &Ctx, call: &Call, segs: &[&str]) -> Reply {
    let m = call.method;
    let get = m == Method::GET;
    let h = ctx.h;
    let entity = call.entity_format();
    match segs {
        ["logonsessions"] if get => {
            let items = world
                .sessions_of(ctx.user)
                .iter()
                .map(|(id, user)| views::logon_session(h, *id, user))
                .collect();
            Reply::Doc(
                StatusCode::OK,
                Node::list("LogonSessions", "LogonSession", items),
            )
        }
        ["logonsessions", id] => {
            let id = Uuid::parse_str(id).ok();
            let mine = world.sessions_of(ctx.user);
            let Some((id, user)) = mine.iter().find(|(s, _)| Some(*s) == id) else {
                return not_found("Logon session was not found.");
            };
            match *m {
                Method::GET => Reply::Doc(StatusCode::OK, views::logon_session(h, *id, user)),
                Method::DELETE => {
                    world.log_off(*id);
                    Reply::NoContent
                }
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
            }
        }
        ["tasks"] if get => {
            let tasks = world.tasks_of(ctx.token, ctx.now);
            let delete_link_type = ctx.faults.task_delete_link_type;
            if call.json_answer {
                let items = tasks
                    .iter()
                    .map(|t| views::task(h, t, delete_link_type))
                    .collect();
                Reply::Doc(StatusCode::OK, Node::list("Tasks", "Task", items))
            } else {
                // Written straight: a busy session's list (25,000 tasks) is asked for every
                // interval, and a tree of it was most of em-sim's CPU.
                Reply::Xml(
                    StatusCode::OK,
                    views::task_list_xml(h, &tasks, delete_link_type),
                )
            }
        }
        ["tasks", id] => {
            let unknown = || {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("There is no backup task with id [{id}] in current rest session"),
                )
            };
            let Some(number) = id.strip_prefix("task-").and_then(|n| n.parse::<u64>().ok()) else {
                return unknown();
            };
            match *m {
                Method::GET => match world.task_of(ctx.token, number, ctx.now) {
                    Some(t) => Reply::Doc(
                        StatusCode::OK,
                        views::task(h, &t, ctx.faults.task_delete_link_type),
                    ),
                    None => unknown(),
                },
                Method::DELETE if world.remove_task(ctx.token, number) => Reply::NoContent,
                Method::DELETE => unknown(),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
            }
        }
        ["backupservers"] if get => {
            let items = world
                .backup_servers
                .iter()
                .map(|b| {
                    if entity {
                        views::backup_server_entity(h, b)
                    } else {
                        views::backup_server_ref(h, b, "Ref")
                    }
                })
                .collect();
            Reply::Doc(
                StatusCode::OK,
                list(entity, "BackupServers", "BackupServer", items),
            )
        }
        ["backupservers", id] if get => match parse_id(id).and_then(|id| world.backup_server(id)) {
            Some(b) if entity => Reply::Doc(StatusCode::OK, views::backup_server_entity(h, b)),
            Some(b) => Reply::Doc(StatusCode::OK, views::backup_server_ref(h, b, "EntityRef")),
            None => not_found(format!("Backup server [{id}] was not found.")),
        },
        ["cloud"] if get => Reply::Doc(StatusCode::OK, cloud_service(h)),
        ["cloud", "gateways"] if get => {
            let items = world
                .gateways_sorted()
                .into_iter()
                .map(|g| {
                    if entity {
                        views::gateway_entity(h, world, g)
                    } else {
                        views::gateway_ref(h, world, g, "Ref")
                    }
                })
                .collect();
            Reply::Doc(
                StatusCode::OK,
                list(entity, "CloudGateways", "CloudGateway", items),
            )
        }
        ["cloud", "gateways"] if m == Method::POST => create_gateway(world, ctx, call),
        ["cloud", "gateways", id] => {
            let Some(gateway) = parse_id(id).and_then(|id| world.gateway(id)).cloned() else {
                return not_found(format!("Cloud gateway [{id}] was not found."));
            };
            match *m {
                Method::GET if entity => {
                    Reply::Doc(StatusCode::OK, views::gateway_entity(h, world, &gateway))
                }
                Method::GET => Reply::Doc(
                    StatusCode::OK,
                    views::gateway_ref(h, world, &gateway, "EntityRef"),
                ),
                Method::PUT => edit_gateway(world, ctx, call, gateway.id),
                Method::DELETE => start(world, ctx, Change::DeleteGateway(gateway.id)),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
            }
        }
        ["cloud", "gatewaypools"] if get => {
            let items = world
                .pools_sorted()
                .into_iter()
                .map(|p| {
                    if entity {
                        views::pool_entity(h, world, p)
                    } else {
                        views::pool_ref(h, world, p, "Ref")
                    }
                })
                .collect();
            Reply::Doc(
                StatusCode::OK,
                list(entity, "CloudGatewayPools", "CloudGatewayPool", items),
            )
        }
        ["cloud", "gatewaypools"] if m == Method::POST => create_pool(world, ctx, call),
        ["cloud", "gatewaypools", id, rest @ ..] => {
            let Some(pool) = parse_id(id).and_then(|id| world.pool(id)).cloned() else {
                return not_found(format!("Cloud gateway pool [{id}] was not found."));
            };
            match (m.clone(), rest) {
                (Method::GET, []) if entity => {
                    Reply::Doc(StatusCode::OK, views::pool_entity(h, world, &pool))
                }
                (Method::GET, []) => Reply::Doc(
                    StatusCode::OK,
                    views::pool_ref(h, world, &pool, "EntityRef"),
                ),
                (Method::GET, ["gateways"]) => {
                    let items = pool
                        .gateways
                        .iter()
                        .filter_map(|g| world.gateway(*g))
                        .map(|g| views::gateway_ref(h, world, g, "Ref"))
                        .collect();
                    Reply::Doc(StatusCode::OK, Node::list("EntityReferences", "Ref", items))
                }
                (Method::GET, ["tenants"]) => {
                    let items = pool
                        .tenants
                        .iter()
                        .filter_map(|t| world.tenant(*t))
                        .map(|t| views::tenant_ref(h, world, t, "Ref"))
                        .collect();
                    Reply::Doc(StatusCode::OK, Node::list("EntityReferences", "Ref", items))
                }
                (Method::PUT, []) => edit_pool(world, ctx, call, pool.id),
                (Method::DELETE, []) => start(world, ctx, Change::DeletePool(pool.id)),
                (_, []) => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
                _ => not_found("The resource was not found."),
            }
        }
        ["cloud", "tenants", rest @ ..] => tenants::cloud_tenants(world, ctx, call, rest),
        ["repositories", rest @ ..] => tenants::repositories(world, ctx, call, rest),
        ["query"] if get => run_query(world, ctx, call),
        _ => not_found("The resource was not found."),
    }
}

fn list(entity: bool, plural: &'static str, item: &'static str, items: Vec<Node>) -> Node {
    if entity {
        Node::list(plural, item, items)
    } else {
        Node::list("EntityReferences", "Ref", items)
    }
}

fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

fn cloud_service(h: &Hrefs) -> Node {
    let down = |path: &str, t: &str| views::link(h.at(path), None, Some(t), "Down");
    Node::new("CloudConnectService")
        .attr("Href", h.at("cloud"))
        .attr("Type", "CloudConnectService")
        .child(Node::links(vec![
            down("cloud/gateways", "CloudGatewayReferenceList"),
            down("cloud/tenants", "CloudTenantReferenceList"),
            down("cloud/gatewayPools", "CloudGatewayPoolReferenceList"),
            down("cloud/gateways?format=Entity", "CloudGatewayList"),
            down("cloud/tenants?format=Entity", "CloudTenantList"),
            down("cloud/gatewayPools?format=Entity", "CloudGatewayPoolList"),
            views::link(h.at("cloud/gateways"), None, None, "Create"),
            views::link(h.at("cloud/tenants"), None, None, "Create"),
            views::link(h.at("cloud/gatewayPools"), None, None, "Create"),
        ]))
}

// -- writes ----------------------------------------------------------------------------------

const NETWORK: Kind = Kind::Enum(&["Direct", "NAT"]);

/// `CreateCloudGatewaySpec` as documented; `IncomingPort` is from the 2017 schema, accepted
/// and ignored.
pub const CREATE_GATEWAY: Schema = Schema::new(
    "CreateCloudGatewaySpec",
    &[
        optional("BackupServerIdOrName", Kind::Name),
        required("ServerHostName", Kind::Name),
        optional("Description", Kind::Text),
        optional("IncomingPort", Kind::Port),
        optional("ExternalIp", Kind::Text),
        optional("ExternalPort", Kind::Port),
        required("NetworkType", NETWORK),
        optional("InternalPort", Kind::Port),
        optional("BackupServerUid", Kind::Uid("BackupServer")),
    ],
);

/// The `CloudGateway` entity taken by PUT. `Links` (a whole representation sent back) and the
/// 2017 schema's `DnsNameOrIpAddress` are accepted and ignored.
pub const EDIT_GATEWAY: Schema = Schema::new(
    "CloudGateway",
    &[
        optional("Links", Kind::Any),
        optional("Enabled", Kind::Bool),
        optional("DnsNameOrIpAddress", Kind::Text),
        required("NetworkMode", NETWORK),
        optional("ExternalIP", Kind::Text),
        optional("ExternalPort", Kind::Port),
        optional("InternalPort", Kind::Port),
        optional("Description", Kind::Text),
    ],
);

pub const CREATE_POOL: Schema = Schema::new(
    "CreateCloudGatewayPoolSpec",
    &[
        required("Name", Kind::Name),
        optional("Description", Kind::Text),
        required(
            "CloudGateways",
            Kind::UidList {
                item: "CloudGatewayUid",
                uid_type: "CloudGateway",
                min: 1,
                unique: false,
            },
        ),
        optional(
            "CloudTenants",
            Kind::UidList {
                item: "CloudTenantUid",
                uid_type: "CloudTenant",
                min: 0,
                unique: false,
            },
        ),
        required("BackupServerUid", Kind::Uid("BackupServer")),
    ],
);

/// The `CloudGatewayPool` entity taken by PUT: the name is the `Name` attribute (a `Name`
/// element is accepted too); `BackupServerUid` is ignored (a pool cannot move).
pub const EDIT_POOL: Schema = Schema::new(
    "CloudGatewayPool",
    &[
        optional("Links", Kind::Any),
        optional("Name", Kind::Name),
        optional("Description", Kind::Text),
        required(
            "CloudGateways",
            Kind::UidList {
                item: "CloudGatewayUid",
                uid_type: "CloudGateway",
                min: 1,
                unique: false,
            },
        ),
        optional(
            "CloudTenants",
            Kind::UidList {
                item: "CloudTenantUid",
                uid_type: "CloudTenant",
                min: 0,
                unique: false,
            },
        ),
        optional("BackupServerUid", Kind::Text),
    ],
);

fn read_body(call: &Call, schema: &Schema) -> Result<Element, Reply> {
    let text = std::str::from_utf8(call.body)
        .map_err(|_| bad_request("The request body is not UTF-8."))?;
    if text.trim().is_empty() {
        return Err(bad_request("Node [root] does not exist."));
    }
    if call.json_body {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| bad_request(format!("The request body is not valid JSON: {e}")))?;
        schema.read_json(&value).map_err(bad_request)
    } else {
        let root = body::parse_xml(text).map_err(bad_request)?;
        schema.check_xml(&root).map_err(bad_request)?;
        Ok(root)
    }
}

fn port(root: &Element, name: &str) -> Option<u16> {
    root.child_text(name).and_then(|t| t.trim().parse().ok())
}

fn uids(root: &Element, list: &str, uid_type: &str) -> Vec<Uuid> {
    root.list(list)
        .iter()
        .filter_map(|u| body::parse_uid(uid_type, u))
        .collect()
}

fn start(world: &mut World, ctx: &Ctx, change: Change) -> Reply {
    let rate = ctx.faults.task_failure_rate;
    let forced = (rate > 0.0 && fastrand::f64() < rate)
        .then(|| "The operation failed (fault injection).".to_string());
    match world.start(ctx.token, change, forced, ctx.now) {
        Some(view) => Reply::Doc(
            StatusCode::ACCEPTED,
            views::task(ctx.h, &view, ctx.faults.task_delete_link_type),
        ),
        None => error(StatusCode::UNAUTHORIZED, AUTH_MESSAGE),
    }
}

fn create_gateway(world: &mut World, ctx: &Ctx, call: &Call) -> Reply {
    let root = match read_body(call, &CREATE_GATEWAY) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let server = match (
        root.child_text("BackupServerUid"),
        root.child_text("BackupServerIdOrName"),
    ) {
        (Some(uid), _) => {
            body::parse_uid("BackupServer", uid).and_then(|id| world.backup_server(id))
        }
        (None, Some(id_or_name)) => body::parse_uid("BackupServer", id_or_name)
            .and_then(|id| world.backup_server(id))
            .or_else(|| world.backup_server_by_name(id_or_name)),
        (None, None) => {
            return bad_request(
                "Element <BackupServerUid> is missing in <CreateCloudGatewaySpec>.",
            );
        }
    };
    let Some(server) = server.map(|s| s.id) else {
        return bad_request("Backup server was not found.");
    };
    let mode = root
        .child_text("NetworkType")
        .and_then(NetworkMode::from_em)
        .unwrap_or(NetworkMode::Direct);
    let external_ip = root
        .child_text("ExternalIp")
        .map(str::trim)
        .filter(|ip| !ip.is_empty());
    if mode == NetworkMode::Nat && external_ip.is_none() {
        return bad_request(
            "Element <ExternalIp> must be specified for a cloud gateway in NAT mode.",
        );
    }
    let host = root
        .child_text("ServerHostName")
        .unwrap_or_default()
        .trim()
        .to_string();
    let description = root
        .child_text("Description")
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "Created by {} at {}",
                ctx.user,
                chrono::Utc::now().format("%-m/%-d/%Y %-I:%M %p")
            )
        });
    let gateway = Gateway {
        id: Uuid::new_v4(),
        created: world.next_created(),
        backup_server: server,
        name: host.clone(),
        enabled: true,
        network_mode: mode,
        external_ip: external_ip.map(str::to_string).unwrap_or(host),
        external_port: port(&root, "ExternalPort").unwrap_or(6180),
        internal_port: port(&root, "InternalPort").unwrap_or(6180),
        description,
    };
    start(world, ctx, Change::CreateGateway(gateway))
}

fn edit_gateway(world: &mut World, ctx: &Ctx, call: &Call, id: Uuid) -> Reply {
    let root = match read_body(call, &EDIT_GATEWAY) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let change = GatewayChange {
        enabled: root.child_text("Enabled").map(|t| t == "true" || t == "1"),
        network_mode: root
            .child_text("NetworkMode")
            .and_then(NetworkMode::from_em),
        external_ip: root.child_text("ExternalIP").map(str::to_string),
        external_port: port(&root, "ExternalPort"),
        internal_port: port(&root, "InternalPort"),
        description: root.child_text("Description").map(str::to_string),
    };
    start(world, ctx, Change::EditGateway(id, change))
}

fn create_pool(world: &mut World, ctx: &Ctx, call: &Call) -> Reply {
    let root = match read_body(call, &CREATE_POOL) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let server = root
        .child_text("BackupServerUid")
        .and_then(|u| body::parse_uid("BackupServer", u))
        .and_then(|id| world.backup_server(id))
        .map(|s| s.id);
    let Some(server) = server else {
        return bad_request("Backup server was not found.");
    };
    let pool = Pool {
        id: Uuid::new_v4(),
        created: world.next_created(),
        backup_server: server,
        name: root
            .child_text("Name")
            .unwrap_or_default()
            .trim()
            .to_string(),
        description: root
            .child_text("Description")
            .unwrap_or_default()
            .to_string(),
        gateways: uids(&root, "CloudGateways", "CloudGateway"),
        tenants: uids(&root, "CloudTenants", "CloudTenant"),
    };
    start(world, ctx, Change::CreatePool(pool))
}

fn edit_pool(world: &mut World, ctx: &Ctx, call: &Call, id: Uuid) -> Reply {
    let root = match read_body(call, &EDIT_POOL) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let name = root
        .attr("Name")
        .or(root.child_text("Name"))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let change = PoolChange {
        name,
        description: root.child_text("Description").map(str::to_string),
        gateways: uids(&root, "CloudGateways", "CloudGateway"),
        tenants: uids(&root, "CloudTenants", "CloudTenant"),
    };
    start(world, ctx, Change::EditPool(id, change))
}

// -- query -----------------------------------------------------------------------------------

fn run_query(world: &World, ctx: &Ctx, call: &Call) -> Reply {
    let Some(kind) = call.param("type") else {
        return bad_request("Query parameter [type] is required.");
    };
    let filter = match call.param("filter").filter(|f| !f.is_empty()) {
        Some(text) => match query::parse(text) {
            Ok(f) => Some(f),
            Err(e) => return bad_request(e),
        },
        None => None,
    };
    let h = ctx.h;
    let server_name = |id: Uuid| {
        world
            .backup_server(id)
            .map(|b| b.name.clone())
            .unwrap_or_default()
    };
    // (record, reference, entity, plural root)
    let rows: Vec<(Record, Node, Node)> = match kind.to_ascii_lowercase().as_str() {
        "cloudgateway" => world
            .gateways_sorted()
            .into_iter()
            .map(|g| {
                let record = vec![
                    ("UID", views::uid("CloudGateway", g.id)),
                    ("Name", g.name.clone()),
                    ("Enabled", g.enabled.to_string()),
                    ("Description", g.description.clone()),
                    (
                        "BackupServerUid",
                        views::uid("BackupServer", g.backup_server),
                    ),
                    ("BackupServerName", server_name(g.backup_server)),
                ];
                (
                    record,
                    views::gateway_ref(h, world, g, "Ref"),
                    views::gateway_entity(h, world, g),
                )
            })
            .collect(),
        "cloudgatewaypool" => world
            .pools_sorted()
            .into_iter()
            .map(|p| {
                let record = vec![
                    ("UID", views::uid("CloudGatewayPool", p.id)),
                    ("Name", p.name.clone()),
                    ("Description", p.description.clone()),
                    (
                        "BackupServerUid",
                        views::uid("BackupServer", p.backup_server),
                    ),
                    ("BackupServerName", server_name(p.backup_server)),
                ];
                (
                    record,
                    views::pool_ref(h, world, p, "Ref"),
                    views::pool_entity(h, world, p),
                )
            })
            .collect(),
        "cloudtenant" => world
            .tenants_sorted()
            .into_iter()
            .map(|t| {
                let record = vec![
                    ("UID", views::uid("CloudTenant", t.id)),
                    ("Name", t.name.clone()),
                    ("Enabled", t.enabled.to_string()),
                    (
                        "BackupServerUid",
                        views::uid("BackupServer", t.backup_server),
                    ),
                    ("BackupServerName", server_name(t.backup_server)),
                    ("Type", "Standalone".to_string()),
                    ("OrganizationReference", String::new()),
                ];
                (
                    record,
                    views::tenant_ref(h, world, t, "Ref"),
                    views::tenant_entity(h, world, t),
                )
            })
            .collect(),
        "repository" => world
            .repositories
            .iter()
            .map(|r| {
                let record = vec![
                    ("UID", views::uid("Repository", r.id)),
                    ("Name", r.name.clone()),
                    (
                        "FreeSpace",
                        (world.repository_free_mb(r) * super::state::MB).to_string(),
                    ),
                    ("Capacity", (r.capacity_mb * super::state::MB).to_string()),
                    (
                        "BackupServerUid",
                        views::uid("BackupServer", r.backup_server),
                    ),
                    ("BackupServerName", server_name(r.backup_server)),
                ];
                (
                    record,
                    views::repository_ref(h, world, r, "Ref"),
                    views::repository_entity(h, world, r),
                )
            })
            .collect(),
        "backupserver" => world
            .backup_servers
            .iter()
            .map(|b| {
                let record = vec![
                    ("UID", views::uid("BackupServer", b.id)),
                    ("Name", b.name.clone()),
                    ("Description", b.description.clone()),
                    ("IpOrDnsName", b.name.clone()),
                    ("Port", b.port.to_string()),
                    ("Version", b.version.clone()),
                ];
                (
                    record,
                    views::backup_server_ref(h, b, "Ref"),
                    views::backup_server_entity(h, b),
                )
            })
            .collect(),
        "task" => world
            .tasks_of(ctx.token, ctx.now)
            .iter()
            .map(|t| {
                let record = vec![
                    ("TaskId", format!("task-{}", t.number)),
                    ("State", t.state.to_string()),
                    ("Operation", t.operation.to_string()),
                ];
                let node = views::task(h, t, ctx.faults.task_delete_link_type);
                (record, node.clone(), node)
            })
            .collect(),
        other => return bad_request(format!("Query type [{other}] is not supported.")),
    };
    let mut rows: Vec<(Record, Node, Node)> = rows
        .into_iter()
        .filter(|(r, _, _)| filter.as_ref().is_none_or(|f| query::matches(f, r)))
        .collect();
    let sort = call
        .param("sortAsc")
        .map(|f| (f, false))
        .or(call.param("sortDesc").map(|f| (f, true)));
    if let Some((field, desc)) = sort {
        let key = |r: &Record| {
            r.iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(field))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        rows.sort_by(|a, b| query::compare(&key(&a.0), &key(&b.0)));
        if desc {
            rows.reverse();
        }
    }
    let page_size = call
        .param("pageSize")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(100);
    let pages = rows.len().div_ceil(page_size).max(1);
    let page = call
        .param("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let entities = call
        .param("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("Entities"));
    let items: Vec<Node> = rows
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(|(_, reference, entity)| if entities { entity } else { reference })
        .collect();
    let plural: &'static str = match kind.to_ascii_lowercase().as_str() {
        "cloudgateway" => "CloudGateways",
        "cloudgatewaypool" => "CloudGatewayPools",
        "cloudtenant" => "CloudTenants",
        "backupserver" => "BackupServers",
        "repository" => "Repositories",
        _ => "Tasks",
    };
    let item: &'static str = match plural {
        "CloudGateways" => "CloudGateway",
        "CloudGatewayPools" => "CloudGatewayPool",
        "CloudTenants" => "CloudTenant",
        "BackupServers" => "BackupServer",
        "Repositories" => "Repository",
        _ => "Task",
    };
    let body = if entities {
        // EM's English plural, not `<Item>s`, for repositories.
        Node::new("Entities").child(Node::list(plural, item, items).json_key(plural))
    } else {
        Node::list("Refs", "Ref", items)
    };
    let page_link = |n: usize, rel: &str| {
        views::link(
            h.at(&format!("query?type={kind}&pageSize={page_size}&page={n}")),
            None,
            Some("QueryResult"),
            rel,
        )
    };
    let paging = Node::new("PagingInfo")
        .attr("PageNum", page.to_string())
        .attr("PageSize", page_size.to_string())
        .attr("PagesCount", pages.to_string())
        .child(Node::links(vec![
            page_link(1, "First"),
            page_link(pages, "Last"),
        ]));
    Reply::Doc(
        StatusCode::OK,
        Node::new("QueryResult").child(body).child(paging),
    )
}
