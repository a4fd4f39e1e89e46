//! EM's representations of the simulator's objects: references (`Ref`/`EntityRef`) and
//! entities, with the links the documentation shows (only to routes the simulator serves).

use uuid::Uuid;

use super::render::{Node, Scalar};
use super::state::{BackupServer, Gateway, Outcome, Pool, TaskView, World};

mod tenants;

pub use tenants::{
    quota, repository_entity, repository_ref, tenant_entity, tenant_ref, tenant_resources,
};

/// Builds absolute Hrefs from the simulator's public base URL (ending in `/api`).
#[derive(Debug, Clone)]
pub struct Hrefs {
    pub base: String,
}

impl Hrefs {
    pub fn at(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

pub fn link(href: String, name: Option<&str>, type_: Option<&str>, rel: &str) -> Node {
    let mut node = Node::empty("Link").attr("Href", href);
    if let Some(n) = name {
        node = node.attr("Name", n);
    }
    if let Some(t) = type_ {
        node = node.attr("Type", t);
    }
    node.attr("Rel", rel)
}

pub fn uid(kind: &str, id: Uuid) -> String {
    format!("urn:veeam:{kind}:{id}")
}

pub fn enterprise_manager(h: &Hrefs) -> Node {
    let versions = ["v1_5", "v1_6", "v1_7"]
        .iter()
        .map(|v| {
            Node::new("SupportedVersion")
                .attr("Name", *v)
                .child(Node::links(vec![link(
                    h.at(&format!("sessionMngr/?v={v}")),
                    None,
                    Some("LogonSession"),
                    "Create",
                )]))
        })
        .collect();
    Node::new("EnterpriseManager")
        .child(Node::links(vec![
            link(
                h.at("logonSessions"),
                None,
                Some("LogonSessionList"),
                "Down",
            ),
            link(
                h.at("sessionMngr/?v=latest"),
                None,
                Some("LogonSession"),
                "Create",
            ),
        ]))
        .child(Node::list(
            "SupportedVersions",
            "SupportedVersion",
            versions,
        ))
}

pub fn logon_session(h: &Hrefs, session_id: Uuid, user: &str) -> Node {
    let me = h.at(&format!("logonSessions/{session_id}"));
    Node::new("LogonSession")
        .attr("Href", me.clone())
        .attr("Type", "LogonSession")
        .child(Node::links(vec![
            link(h.at(""), None, Some("EnterpriseManager"), "Up"),
            link(
                h.at("backupServers"),
                None,
                Some("BackupServerReferenceList"),
                "Down",
            ),
            link(h.at("tasks"), None, Some("TaskList"), "Down"),
            link(h.at("cloud"), None, Some("CloudConnectService"), "Down"),
            link(me, None, None, "Delete"),
        ]))
        .child(Node::text("UserName", user))
        .child(Node::text("SessionId", session_id.to_string()))
}

/// A `<Tasks>` document, written as [`task`]'s nodes in a list would be (a test holds them
/// to it), without building them.
pub fn task_list_xml(h: &Hrefs, tasks: &[TaskView], delete_link_type: bool) -> String {
    use quick_xml::escape::escape;
    use std::fmt::Write;
    let mut out = String::with_capacity(64 + tasks.len() * 400);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Tasks xmlns=\"");
    out.push_str(crate::em::xml::NAMESPACE);
    if tasks.is_empty() {
        out.push_str("\" />");
        return out;
    }
    out.push_str("\">");
    let base = escape(h.base.as_str());
    for view in tasks {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "<Task Href=\"{base}/tasks/task-{n}\" Type=\"Task\"><Links><Link Href=\"{base}/tasks/task-{n}\"{t} Rel=\"Delete\" />",
            n = view.number,
            t = if delete_link_type {
                " Type=\"Task\""
            } else {
                ""
            },
        );
        if let Some(Outcome::Succeeded(Some(related))) = &view.outcome {
            let _ = write!(
                out,
                "<Link Href=\"{base}/{}\" Name=\"{}\" Type=\"{}\" Rel=\"Related\" />",
                escape(related.path.as_str()),
                escape(related.name.as_str()),
                escape(related.type_),
            );
        }
        let _ = write!(
            out,
            "</Links><TaskId>task-{}</TaskId><State>{}</State><Operation>{}</Operation>",
            view.number,
            escape(view.state),
            escape(view.operation),
        );
        if let Some(outcome) = &view.outcome {
            let (success, message) = match outcome {
                Outcome::Succeeded(_) => (true, "Ok"),
                Outcome::Failed(m) => (false, m.as_str()),
            };
            let message = if view.state == "OperationFinished" {
                "OperationFinished"
            } else {
                message
            };
            let _ = write!(
                out,
                "<Result Success=\"{success}\"><Message>{}</Message></Result>",
                escape(message)
            );
        }
        out.push_str("</Task>");
    }
    out.push_str("</Tasks>");
    out
}

pub fn task(h: &Hrefs, view: &TaskView, delete_link_type: bool) -> Node {
    let me = h.at(&format!("tasks/task-{}", view.number));
    let mut links = vec![link(
        me.clone(),
        None,
        delete_link_type.then_some("Task"),
        "Delete",
    )];
    if let Some(Outcome::Succeeded(Some(related))) = &view.outcome {
        links.push(link(
            h.at(&related.path),
            Some(&related.name),
            Some(related.type_),
            "Related",
        ));
    }
    let mut node = Node::new("Task")
        .attr("Href", me)
        .attr("Type", "Task")
        .child(Node::links(links))
        .child(Node::text("TaskId", format!("task-{}", view.number)))
        .child(Node::text("State", view.state))
        .child(Node::text("Operation", view.operation));
    if let Some(outcome) = &view.outcome {
        let (success, message) = match outcome {
            Outcome::Succeeded(_) => (true, "Ok".to_string()),
            Outcome::Failed(m) => (false, m.clone()),
        };
        let message = if view.state == "OperationFinished" {
            "OperationFinished".to_string()
        } else {
            message
        };
        node = node.child(
            Node::new("Result")
                .attr("Success", success.to_string())
                .child(Node::text("Message", message)),
        );
    }
    node
}

// -- backup servers --------------------------------------------------------------------------

pub fn backup_server_ref(h: &Hrefs, b: &BackupServer, root: &'static str) -> Node {
    let me = h.at(&format!("backupServers/{}", b.id));
    Node::new(root)
        .attr("Type", "BackupServerReference")
        .attr("Href", me.clone())
        .attr("Name", b.name.clone())
        .attr("UID", uid("BackupServer", b.id))
        .child(Node::links(vec![
            link(format!("{me}/jobs"), None, Some("JobReferenceList"), "Down"),
            link(
                format!("{me}?format=Entity"),
                Some(&b.name),
                Some("BackupServer"),
                "Alternate",
            ),
        ]))
}

pub fn backup_server_entity(h: &Hrefs, b: &BackupServer) -> Node {
    let me = h.at(&format!("backupServers/{}", b.id));
    Node::new("BackupServer")
        .attr("Href", format!("{me}?format=Entity"))
        .attr("Type", "BackupServer")
        .attr("Name", b.name.clone())
        .attr("UID", uid("BackupServer", b.id))
        .child(Node::links(vec![link(
            me,
            Some(&b.name),
            Some("BackupServerReference"),
            "Alternate",
        )]))
        .child(Node::text("Description", b.description.clone()))
        .child(Node::value("Port", Scalar::Int(i64::from(b.port))))
        .child(Node::text("Version", b.version.clone()))
}

fn up_link(h: &Hrefs, world: &World, server: Uuid) -> Node {
    let name = world
        .backup_server(server)
        .map(|b| b.name.clone())
        .unwrap_or_default();
    link(
        h.at(&format!("backupServers/{server}")),
        Some(&name),
        Some("BackupServerReference"),
        "Up",
    )
}

// -- gateways --------------------------------------------------------------------------------

pub fn gateway_ref(h: &Hrefs, world: &World, g: &Gateway, root: &'static str) -> Node {
    let me = h.at(&format!("cloud/gateways/{}", g.id));
    Node::new(root)
        .attr("Type", "CloudGatewayReference")
        .attr("Href", me.clone())
        .attr("Name", g.name.clone())
        .attr("UID", uid("CloudGateway", g.id))
        .child(Node::links(vec![
            up_link(h, world, g.backup_server),
            link(
                format!("{me}?format=Entity"),
                Some(&g.name),
                Some("CloudGateway"),
                "Alternate",
            ),
        ]))
}

pub fn gateway_entity(h: &Hrefs, world: &World, g: &Gateway) -> Node {
    let me = h.at(&format!("cloud/gateways/{}", g.id));
    let mut links = vec![
        up_link(h, world, g.backup_server),
        link(
            me.clone(),
            Some(&g.name),
            Some("CloudGatewayReference"),
            "Alternate",
        ),
        link(
            me.clone(),
            Some(&g.name),
            Some("CloudGatewayReference"),
            "Edit",
        ),
        link(me.clone(), None, None, "Delete"),
    ];
    if let Some(pool) = world.pool_of_gateway(g.id) {
        links.push(link(
            h.at(&format!("cloud/gatewayPools/{}", pool.id)),
            Some(&pool.name),
            Some("CloudGatewayPoolReference"),
            "Related",
        ));
    }
    Node::new("CloudGateway")
        .attr("Href", format!("{me}?format=Entity"))
        .attr("Type", "CloudGateway")
        .attr("Name", g.name.clone())
        .attr("UID", uid("CloudGateway", g.id))
        .child(Node::links(links))
        .child(Node::value("Enabled", Scalar::Bool(g.enabled)))
        .child(Node::text("NetworkMode", g.network_mode.as_em()))
        .child(Node::text("ExternalIP", g.external_ip.clone()))
        .child(Node::value(
            "ExternalPort",
            Scalar::Int(i64::from(g.external_port)),
        ))
        .child(Node::value(
            "InternalPort",
            Scalar::Int(i64::from(g.internal_port)),
        ))
        .child(Node::text("Description", g.description.clone()))
}

// -- pools -----------------------------------------------------------------------------------

pub fn pool_ref(h: &Hrefs, world: &World, p: &Pool, root: &'static str) -> Node {
    let me = h.at(&format!("cloud/gatewayPools/{}", p.id));
    Node::new(root)
        .attr("UID", uid("CloudGatewayPool", p.id))
        .attr("Name", p.name.clone())
        .attr("Href", me.clone())
        .attr("Type", "CloudGatewayPoolReference")
        .child(Node::links(vec![
            up_link(h, world, p.backup_server),
            link(
                format!("{me}?format=Entity"),
                Some(&p.name),
                Some("CloudGatewayPool"),
                "Alternate",
            ),
        ]))
}

pub fn pool_entity(h: &Hrefs, world: &World, p: &Pool) -> Node {
    let me = h.at(&format!("cloud/gatewayPools/{}", p.id));
    let gateways = p
        .gateways
        .iter()
        .map(|g| Node::text("CloudGatewayUid", uid("CloudGateway", *g)))
        .collect();
    let tenants = p
        .tenants
        .iter()
        .map(|t| Node::text("CloudTenantUid", uid("CloudTenant", *t)))
        .collect();
    Node::new("CloudGatewayPool")
        .attr("Href", format!("{me}?format=Entity"))
        .attr("Type", "CloudGatewayPool")
        .attr("Name", p.name.clone())
        .attr("UID", uid("CloudGatewayPool", p.id))
        .child(Node::links(vec![
            up_link(h, world, p.backup_server),
            link(
                me.clone(),
                Some(&p.name),
                Some("CloudGatewayPoolReference"),
                "Alternate",
            ),
            link(
                me.clone(),
                Some(&p.name),
                Some("CloudGatewayPoolReference"),
                "Edit",
            ),
            link(me.clone(), None, None, "Delete"),
            link(
                format!("{me}/gateways"),
                None,
                Some("CloudGatewayReferenceList"),
                "Down",
            ),
            link(
                format!("{me}/tenants"),
                None,
                Some("CloudTenantReferenceList"),
                "Related",
            ),
        ]))
        .child(Node::text("Description", p.description.clone()))
        .child(Node::list("CloudGateways", "CloudGatewayUid", gateways))
        .child(Node::list("CloudTenants", "CloudTenantUid", tenants))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::state::Related;

    #[test]
    fn a_task_list_is_written_as_its_nodes_would_be() {
        let h = Hrefs {
            base: "http://em:9399/api?x=<&>".into(),
        };
        let view = |number, state, outcome| TaskView {
            number,
            operation: "CreateCloudGateway",
            state,
            outcome,
        };
        let related = |name: &str| {
            Some(Related {
                type_: "CloudGateway",
                path: "cloud/gateways/0f3c?format=Entity&x=\"1\"".into(),
                name: name.into(),
            })
        };
        let tasks = [
            view(1, "Running", None),
            view(
                2,
                "OperationFinished",
                Some(Outcome::Succeeded(related(""))),
            ),
            view(
                3,
                "Finished",
                Some(Outcome::Succeeded(related("tenant <a>"))),
            ),
            view(4, "Finished", Some(Outcome::Succeeded(None))),
            view(
                5,
                "Finished",
                Some(Outcome::Failed("Name 'x' & <y> taken".into())),
            ),
            view(6, "Finished", Some(Outcome::Failed(String::new()))),
        ];
        for delete_link_type in [false, true] {
            for tasks in [&tasks[..], &tasks[..1], &[]] {
                let nodes = tasks
                    .iter()
                    .map(|t| task(&h, t, delete_link_type))
                    .collect();
                assert_eq!(
                    task_list_xml(&h, tasks, delete_link_type),
                    Node::list("Tasks", "Task", nodes).to_xml(),
                    "{} tasks, Type on the Delete link: {delete_link_type}",
                    tasks.len()
                );
            }
        }
    }
}
