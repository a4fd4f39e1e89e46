//! Enterprise Manager's XML documents, with EM's element names and EM's element order.
//!
//! Request bodies (`CreateCloudGatewaySpec`, `CreateCloudGatewayPoolSpec`, and the `CloudGateway` /
//! `CloudGatewayPool` entities that EM takes on PUT) are serialized field by field in schema order:
//! EM's .NET deserializer follows the XSD sequence, so the field order of each struct below *is*
//! the wire order. Answers are read leniently (unknown elements are skipped) because EM adds
//! elements between versions.

use serde::{Deserialize, Serialize};

/// EM's default namespace; every root element carries it.
pub const NAMESPACE: &str = "http://www.veeam.com/ent/v1.0";

const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Serializes a request body: XML declaration, then the root element with EM's namespace.
pub fn to_xml<T: Serialize>(body: &T) -> Result<String, quick_xml::SeError> {
    let mut out = String::from(DECLARATION);
    out.push_str(&quick_xml::se::to_string(body)?);
    Ok(out)
}

/// One of EM's answer documents, by its root element.
pub trait Document {
    const ROOT: &'static str;
}

/// Parses one of EM's answers. The root element must be the expected one: the reader itself
/// would take any document (an HTML error page included) as an empty answer.
pub fn from_xml<'de, T: Deserialize<'de> + Document>(
    text: &'de str,
) -> Result<T, quick_xml::DeError> {
    let root = root_name(text);
    if root.as_deref() != Some(T::ROOT) {
        return Err(quick_xml::DeError::Custom(format!(
            "expected a <{}> document, got {}",
            T::ROOT,
            root.map_or("no XML".to_string(), |r| format!("<{r}>"))
        )));
    }
    quick_xml::de::from_str(text)
}

/// The finished tasks among those `wanted` in a `<Tasks>` list. A session's list holds every
/// task EM still keeps for it, thousands when busy, and the poller reads it every interval;
/// only the few that finished since are wanted whole, so the others are skimmed for their id
/// and state and never built.
pub fn finished_tasks(
    text: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Task>, quick_xml::DeError> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display| quick_xml::DeError::Custom(e.to_string());
    let not_a_list = |got: &str| {
        quick_xml::DeError::Custom(format!("expected a <{}> document, got {got}", Tasks::ROOT))
    };
    let mut reader = quick_xml::Reader::from_str(text);
    let mut found = Vec::new();
    let mut depth = 0usize;
    // The task being read: where its element starts, its id, whether it has finished.
    let mut task: Option<(usize, Option<String>, bool)> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).map_err(|e| bad(&e))?;
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                let local = e.local_name();
                let name: &str = local.as_ref();
                match (depth, name) {
                    (0, root) if root != Tasks::ROOT => {
                        return Err(not_a_list(&format!("<{root}>")));
                    }
                    (1, "Task") => task = Some((before, None, false)),
                    (2, "TaskId" | "State") if task.is_some() => {
                        let value = reader.read_text(e.name()).map_err(|e| bad(&e))?;
                        if let Some(t) = task.as_mut() {
                            if name == "TaskId" {
                                t.1 = Some(value.trim().to_string());
                            } else {
                                t.2 = value.trim() == "Finished";
                            }
                        }
                        // The element was read through its end: the depth is unchanged.
                        continue;
                    }
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(e) if depth == 0 => {
                let local = e.local_name();
                let name: &str = local.as_ref();
                return if name == Tasks::ROOT {
                    Ok(found)
                } else {
                    Err(not_a_list(&format!("<{name}>")))
                };
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                match depth {
                    0 => return Ok(found),
                    1 => {
                        if let Some((start, Some(id), true)) = task.take()
                            && wanted(&id)
                        {
                            let end =
                                usize::try_from(reader.buffer_position()).map_err(|e| bad(&e))?;
                            let element = text.get(start..end).ok_or_else(|| bad(&"a cut task"))?;
                            found.push(quick_xml::de::from_str::<Task>(element)?);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof if depth == 0 => return Err(not_a_list("no XML")),
            Event::Eof => return Err(bad(&"the task list ends early")),
            _ => {}
        }
    }
}

/// The local name of the first element.
fn root_name(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(e.local_name().as_ref().to_string());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

macro_rules! documents {
    ($($t:ty => $root:literal),+ $(,)?) => {
        $(impl Document for $t { const ROOT: &'static str = $root; })+
    };
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// `NetworkType` in the create spec, `NetworkMode` in the entity: same two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Direct,
    #[serde(rename = "NAT")]
    Nat,
}

/// `POST /cloud/gateways`. Note `ExternalIp` and `NetworkType` (the entity says `ExternalIP` and
/// `NetworkMode`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CreateCloudGatewaySpec")]
pub struct CreateCloudGatewaySpec {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "ServerHostName")]
    pub server_host_name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "ExternalIp", skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", skip_serializing_if = "Option::is_none")]
    pub external_port: Option<u16>,
    #[serde(rename = "NetworkType")]
    pub network_type: NetworkMode,
    #[serde(rename = "InternalPort", skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    #[serde(rename = "BackupServerUid")]
    pub backup_server_uid: String,
}

/// `POST /cloud/gatewayPools`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CreateCloudGatewayPoolSpec")]
pub struct CreateCloudGatewayPoolSpec {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways")]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants", skip_serializing_if = "Option::is_none")]
    pub cloud_tenants: Option<CloudTenantUids>,
    #[serde(rename = "BackupServerUid")]
    pub backup_server_uid: String,
}

/// `PUT /cloud/gateways/{id}`: the entity's element names, without `Links`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CloudGateway")]
pub struct CloudGatewayEdit {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "Enabled", skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(rename = "NetworkMode")]
    pub network_mode: NetworkMode,
    #[serde(rename = "ExternalIP", skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", skip_serializing_if = "Option::is_none")]
    pub external_port: Option<u16>,
    #[serde(rename = "InternalPort", skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PUT /cloud/gatewayPools/{id}`: the new name travels in the `Name` attribute; the gateway and
/// tenant lists replace the pool's lists whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CloudGatewayPool")]
pub struct CloudGatewayPoolEdit {
    #[serde(rename = "@xmlns")]
    pub xmlns: Namespace,
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways")]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants")]
    pub cloud_tenants: CloudTenantUids,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudGatewayUids {
    #[serde(rename = "CloudGatewayUid", default)]
    pub uids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudTenantUids {
    #[serde(rename = "CloudTenantUid", default)]
    pub uids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudGatewayPoolUids {
    #[serde(rename = "CloudGatewayPoolUid", default)]
    pub uids: Vec<String>,
}

/// The `xmlns` attribute of a request root: always EM's namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespace;

impl Serialize for Namespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(NAMESPACE)
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Links {
    #[serde(rename = "Link", default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Link {
    #[serde(rename = "@Href")]
    pub href: String,
    #[serde(rename = "@Rel", default)]
    pub rel: Option<String>,
    #[serde(rename = "@Type", default)]
    pub type_: Option<String>,
    #[serde(rename = "@Name", default)]
    pub name: Option<String>,
}

impl Links {
    /// The first link with this `Rel` (and, when given, this `Type`).
    pub fn find(&self, rel: &str, type_: Option<&str>) -> Option<&Link> {
        self.links.iter().find(|l| {
            l.rel
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                && type_.is_none_or(|t| {
                    l.type_
                        .as_deref()
                        .is_some_and(|lt| lt.eq_ignore_ascii_case(t))
                })
        })
    }
}

/// `State` of an EM task. `OperationFinished` means the backup server is done but EM's database
/// does not have the result yet: still in progress for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TaskState {
    Running,
    OperationFinished,
    Finished,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Task")]
pub struct Task {
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "TaskId")]
    pub task_id: String,
    #[serde(rename = "State")]
    pub state: TaskState,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Result", default)]
    pub result: Option<TaskResult>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskResult {
    #[serde(rename = "@Success")]
    pub success: bool,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "Tasks")]
pub struct Tasks {
    #[serde(rename = "Task", default)]
    pub tasks: Vec<Task>,
}

/// EM's `Error` body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Error")]
pub struct Error {
    #[serde(rename = "@Message", default)]
    pub message: Option<String>,
    #[serde(rename = "@StatusCode", default)]
    pub status_code: Option<u16>,
    #[serde(rename = "FirstChanceExceptionMessage", default)]
    pub first_chance_exception_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "LogonSession")]
pub struct LogonSession {
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "UserName", default)]
    pub user_name: Option<String>,
    #[serde(rename = "SessionId")]
    pub session_id: String,
}

/// A reference (`Ref` in lists, `EntityRef` alone).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reference {
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@Href", default)]
    pub href: Option<String>,
    #[serde(rename = "@Type", default)]
    pub type_: Option<String>,
    #[serde(rename = "Links", default)]
    pub links: Links,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "EntityReferences")]
pub struct EntityReferences {
    #[serde(rename = "Ref", default)]
    pub refs: Vec<Reference>,
}

/// `CloudGateway` entity (`?format=Entity`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudGateway {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Enabled", default)]
    pub enabled: Option<bool>,
    #[serde(rename = "NetworkMode")]
    pub network_mode: NetworkMode,
    #[serde(rename = "ExternalIP", default)]
    pub external_ip: Option<String>,
    #[serde(rename = "ExternalPort", default)]
    pub external_port: Option<u16>,
    #[serde(rename = "InternalPort", default)]
    pub internal_port: Option<u16>,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudGateways")]
pub struct CloudGateways {
    #[serde(rename = "CloudGateway", default)]
    pub items: Vec<CloudGateway>,
}

/// `CloudGatewayPool` entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudGatewayPool {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "CloudGateways", default)]
    pub cloud_gateways: CloudGatewayUids,
    #[serde(rename = "CloudTenants", default)]
    pub cloud_tenants: CloudTenantUids,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudGatewayPools")]
pub struct CloudGatewayPools {
    #[serde(rename = "CloudGatewayPool", default)]
    pub items: Vec<CloudGatewayPool>,
}

/// `BackupServer` entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackupServer {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Port", default)]
    pub port: Option<u16>,
    #[serde(rename = "Version", default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "BackupServers")]
pub struct BackupServers {
    #[serde(rename = "BackupServer", default)]
    pub items: Vec<BackupServer>,
}

/// `CloudTenant` entity: only what a provisioning portal needs of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloudTenant {
    #[serde(rename = "@Name", default)]
    pub name: String,
    #[serde(rename = "@UID")]
    pub uid: String,
    #[serde(rename = "Links", default)]
    pub links: Links,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "Enabled", default)]
    pub enabled: Option<bool>,
    #[serde(rename = "CloudGatewayPools", default)]
    pub cloud_gateway_pools: CloudGatewayPoolUids,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename = "CloudTenants")]
pub struct CloudTenants {
    #[serde(rename = "CloudTenant", default)]
    pub items: Vec<CloudTenant>,
}

documents!(
    Task => "Task",
    Tasks => "Tasks",
    Error => "Error",
    LogonSession => "LogonSession",
    EntityReferences => "EntityReferences",
    CloudGateway => "CloudGateway",
    CloudGateways => "CloudGateways",
    CloudGatewayPool => "CloudGatewayPool",
    CloudGatewayPools => "CloudGatewayPools",
    BackupServer => "BackupServer",
    BackupServers => "BackupServers",
    CloudTenant => "CloudTenant",
    CloudTenants => "CloudTenants",
);

/// The bare guid at the end of a `urn:veeam:<Type>:<guid>` UID (or of an Href path).
pub fn id_of(uid_or_href: &str) -> &str {
    let path = uid_or_href.split(['?', '#']).next().unwrap_or(uid_or_href);
    path.rsplit([':', '/']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_takes_the_guid_from_uids_and_hrefs() {
        assert_eq!(id_of("urn:veeam:CloudGateway:abc-1"), "abc-1");
        assert_eq!(
            id_of("https://em:9398/api/cloud/gateways/abc-1?format=Entity"),
            "abc-1"
        );
        assert_eq!(id_of("abc-1"), "abc-1");
    }

    #[test]
    fn reads_a_finished_task_with_its_related_link() {
        let xml = r#"<Task xmlns="http://www.veeam.com/ent/v1.0" Href="https://em/api/tasks/task-4" Type="Task">
  <Links>
    <Link Href="https://em/api/tasks/task-4" Rel="Delete"/>
    <Link Href="https://em/api/cloud/gateways/3f2a?format=Entity" Name="" Type="CloudGateway" Rel="Related"/>
  </Links>
  <TaskId>task-4</TaskId><State>Finished</State><Operation>CreateCloudGateway</Operation>
  <Result Success="true"><Message>Ok</Message></Result></Task>"#;
        let task: Task = from_xml(xml).unwrap();
        assert_eq!(task.state, TaskState::Finished);
        assert!(task.result.as_ref().unwrap().success);
        let related = task.links.find("Related", None).unwrap();
        assert_eq!(id_of(&related.href), "3f2a");
    }

    #[test]
    fn an_unknown_task_state_does_not_fail_the_parse() {
        let xml =
            r#"<Task><TaskId>task-1</TaskId><State>Queued</State><Operation>X</Operation></Task>"#;
        let task: Task = from_xml(xml).unwrap();
        assert_eq!(task.state, TaskState::Unknown);
        assert!(task.result.is_none());
    }

    #[test]
    fn an_answer_with_another_root_is_refused() {
        let html = "<html><body><h1>Welcome</h1></body></html>";
        let err = from_xml::<BackupServers>(html).unwrap_err().to_string();
        assert!(
            err.contains("expected a <BackupServers> document, got <html>"),
            "{err}"
        );
        assert!(from_xml::<Tasks>("not xml at all").is_err());
        assert!(from_xml::<Tasks>(r#"<?xml version="1.0"?><!-- c --><Tasks xmlns="x"/>"#).is_ok());
    }

    #[test]
    fn a_task_list_is_skimmed_for_the_finished_tasks_wanted() {
        let task = |id: &str, state: &str| {
            format!(
                r#"<Task Href="https://em/api/tasks/{id}" Type="Task"><Links><Link Href="https://em/api/cloud/gateways/{id}-gw?format=Entity" Type="CloudGateway" Rel="Related"/></Links><TaskId>{id}</TaskId><State>{state}</State><Operation>CreateCloudGateway</Operation><Result Success="true"><Message>Ok &amp; done</Message></Result></Task>"#
            )
        };
        let list = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Tasks xmlns=\"http://www.veeam.com/ent/v1.0\">\n  {}\n  {}\n  {}\n  {}\n</Tasks>",
            task("task-1", "Running"),
            task("task-2", "Finished"),
            task("task-3", "Finished"),
            task("task-4", "OperationFinished"),
        );
        let skimmed = finished_tasks(&list, |id| id != "task-3").unwrap();
        let whole: Tasks = from_xml(&list).unwrap();
        assert_eq!(
            skimmed,
            vec![whole.tasks[1].clone()],
            "as the whole parse reads it"
        );
        assert_eq!(
            skimmed[0].result.as_ref().unwrap().message.as_deref(),
            Some("Ok & done")
        );
        assert_eq!(
            id_of(&skimmed[0].links.find("Related", None).unwrap().href),
            "task-2-gw"
        );
        assert!(finished_tasks(&list, |_| false).unwrap().is_empty());
        assert!(
            finished_tasks(r#"<Tasks xmlns="x"/>"#, |_| true)
                .unwrap()
                .is_empty()
        );
        assert!(
            finished_tasks("<Tasks></Tasks>", |_| true)
                .unwrap()
                .is_empty()
        );
        let html = finished_tasks("<html><body>busy</body></html>", |_| true).unwrap_err();
        assert!(
            html.to_string()
                .contains("expected a <Tasks> document, got <html>"),
            "{html}"
        );
        assert!(finished_tasks("not xml at all", |_| true).is_err());
        assert!(
            finished_tasks(&list[..list.len() / 2], |_| true).is_err(),
            "cut short"
        );
    }

    #[test]
    fn reads_an_error_body() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Error xmlns="http://www.veeam.com/ent/v1.0" Message="Cloud gateway pool name must be unique." StatusCode="400">
  <FirstChanceExceptionMessage>Cloud gateway pool name must be unique.</FirstChanceExceptionMessage>
</Error>"#;
        let err: Error = from_xml(xml).unwrap();
        assert_eq!(err.status_code, Some(400));
        assert_eq!(
            err.message.as_deref(),
            Some("Cloud gateway pool name must be unique.")
        );
    }
}
