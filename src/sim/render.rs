//! The simulator's answers: one tree, written as EM's XML or as EM's JSON (em-api.md §9.2).

use quick_xml::escape::escape;
use serde_json::{Map, Value};

use crate::em::xml::NAMESPACE;

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    pub fn xml(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    /// Writes it as XML text, escaped, without building a string first (a task list of
    /// 25,000 tasks is written many times a second in the benchmarks).
    fn write_xml(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Scalar::Str(s) => out.push_str(&escape(s.as_str())),
            Scalar::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }

    fn json(&self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s.clone()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Bool(b) => Value::Bool(*b),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Empty,
    /// An empty string that is always there: `<Password />` in XML, `""` in JSON.
    Blank,
    Value(Scalar),
    Children(Vec<Node>),
    /// A wrapper of repeated items. JSON: `{"<Item>s": [...]}`, or a bare array for `Links`;
    /// when empty `{}`, or `{"<Item>s": []}` with `keep_empty`.
    List {
        item: &'static str,
        items: Vec<Node>,
        bare: bool,
        keep_empty: bool,
        /// The JSON array's name when it is not `<Item>s` (`Repositories`).
        key: Option<&'static str>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: &'static str,
    pub attrs: Vec<(&'static str, Scalar)>,
    pub content: Content,
}

impl Node {
    pub fn new(name: &'static str) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::Children(Vec::new()),
        }
    }

    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.attrs.push((name, Scalar::Str(value.into())));
        self
    }

    /// An attribute that JSON writes as a number or boolean (XML cannot tell).
    pub fn attr_value(mut self, name: &'static str, value: Scalar) -> Self {
        self.attrs.push((name, value));
        self
    }

    pub fn attr_text(&self, name: &str) -> Option<String> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.xml())
    }

    /// Appends a child element (only on a node with children).
    pub fn child(mut self, child: Node) -> Self {
        if let Content::Children(children) = &mut self.content {
            children.push(child);
        }
        self
    }

    pub fn text(name: &'static str, value: impl Into<String>) -> Self {
        Node::value(name, Scalar::Str(value.into()))
    }

    pub fn value(name: &'static str, value: Scalar) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::Value(value),
        }
    }

    pub fn blank(name: &'static str) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::Blank,
        }
    }

    pub fn empty(name: &'static str) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::Empty,
        }
    }

    pub fn list(name: &'static str, item: &'static str, items: Vec<Node>) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::List {
                item,
                items,
                bare: false,
                keep_empty: false,
                key: None,
            },
        }
    }

    /// A list whose JSON array is there even when empty (`{"CloudTenantResources": []}`).
    pub fn list_always(name: &'static str, item: &'static str, items: Vec<Node>) -> Self {
        Node {
            name,
            attrs: Vec::new(),
            content: Content::List {
                item,
                items,
                bare: false,
                keep_empty: true,
                key: None,
            },
        }
    }

    /// Names a list's JSON array, where EM does not follow `<Item>s`.
    pub fn json_key(mut self, name: &'static str) -> Self {
        if let Content::List { key, .. } = &mut self.content {
            *key = Some(name);
        }
        self
    }

    pub fn links(links: Vec<Node>) -> Self {
        Node {
            name: "Links",
            attrs: Vec::new(),
            content: Content::List {
                item: "Link",
                items: links,
                bare: true,
                keep_empty: false,
                key: None,
            },
        }
    }

    /// The whole document as EM writes it: declaration, root in EM's namespace.
    pub fn to_xml(&self) -> String {
        let mut out = String::from(r#"<?xml version="1.0" encoding="utf-8"?>"#);
        out.push('\n');
        self.write_xml(&mut out, true);
        out
    }

    fn write_xml(&self, out: &mut String, root: bool) {
        out.push('<');
        out.push_str(self.name);
        if root {
            out.push_str(r#" xmlns=""#);
            out.push_str(NAMESPACE);
            out.push('"');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str(r#"=""#);
            v.write_xml(out);
            out.push('"');
        }
        let children: &[Node] = match &self.content {
            Content::Empty | Content::Blank => &[],
            Content::Value(v) => {
                out.push('>');
                v.write_xml(out);
                out.push_str("</");
                out.push_str(self.name);
                out.push('>');
                return;
            }
            Content::Children(c) => c,
            Content::List { items, .. } => items,
        };
        if children.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        for child in children {
            child.write_xml(out, false);
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }

    /// The document as EM's JSON: the root's own properties, no wrapper.
    pub fn to_json(&self, camel: bool) -> Value {
        let value = self.json_value();
        if camel { camel_keys(value) } else { value }
    }

    fn json_value(&self) -> Value {
        let mut object = Map::new();
        match &self.content {
            Content::Empty if self.attrs.is_empty() => return Value::Null,
            Content::Blank if self.attrs.is_empty() => return Value::String(String::new()),
            Content::Value(v) if self.attrs.is_empty() => return v.json(),
            Content::Empty | Content::Blank => {}
            Content::Value(v) => {
                object.insert("Value".into(), v.json());
            }
            Content::Children(children) => {
                for child in children {
                    object.insert(child.name.to_string(), child.json_value());
                }
            }
            Content::List {
                items, bare: true, ..
            } => {
                return Value::Array(items.iter().map(Node::json_value).collect());
            }
            Content::List {
                item,
                items,
                keep_empty,
                key,
                ..
            } => {
                if !items.is_empty() || *keep_empty {
                    object.insert(
                        key.map_or_else(|| format!("{item}s"), str::to_string),
                        Value::Array(items.iter().map(Node::json_value).collect()),
                    );
                }
            }
        }
        for (k, v) in &self.attrs {
            object.insert((*k).to_string(), v.json());
        }
        Value::Object(object)
    }
}

/// `UID` → `uid`, `TaskId` → `taskId`, `ExternalIP` → `externalIP`: the v13 casing some
/// clients report.
pub fn camel_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let upper_run = chars.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let lower_up_to = match upper_run {
        0 => 0,
        n if n == chars.len() => n,
        1 => 1,
        n => n - 1,
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < lower_up_to {
                c.to_ascii_lowercase()
            } else {
                *c
            }
        })
        .collect()
}

fn camel_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (camel_case(&k), camel_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Node {
        Node::new("Task")
            .attr("Href", "http://em/api/tasks/task-1")
            .attr("Type", "Task")
            .child(Node::links(vec![
                Node::empty("Link")
                    .attr("Href", "http://em/api/tasks/task-1")
                    .attr("Rel", "Delete"),
            ]))
            .child(Node::text("TaskId", "task-1"))
            .child(Node::text("State", "Running"))
    }

    #[test]
    fn writes_xml_with_the_namespace_on_the_root_only() {
        let xml = task().to_xml();
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#));
        assert_eq!(xml.matches("xmlns=").count(), 1);
        assert!(
            xml.contains(
                r#"<Links><Link Href="http://em/api/tasks/task-1" Rel="Delete" /></Links>"#
            )
        );
        assert!(xml.contains("<TaskId>task-1</TaskId>"));
    }

    #[test]
    fn writes_json_by_ems_rules() {
        let json = task().to_json(false);
        assert_eq!(json["TaskId"], "task-1");
        assert_eq!(json["Links"][0]["Rel"], "Delete");
        let refs = Node::list(
            "EntityReferences",
            "Ref",
            vec![Node::new("Ref").attr("UID", "u")],
        );
        assert_eq!(refs.to_json(false)["Refs"][0]["UID"], "u");
        let empty = Node::list("CloudTenants", "CloudTenantUid", vec![]);
        assert_eq!(empty.to_json(false), serde_json::json!({}));
        assert_eq!(task().to_json(true)["taskId"], "task-1");
        let kept = Node::list_always("Resources", "CloudTenantResource", vec![]);
        assert_eq!(
            kept.to_json(false),
            serde_json::json!({"CloudTenantResources": []})
        );
        assert_eq!(
            kept.to_xml().lines().last(),
            Some(r#"<Resources xmlns="http://www.veeam.com/ent/v1.0" />"#)
        );
    }

    #[test]
    fn blanks_and_typed_attributes() {
        let lease = Node::empty("LeaseOptions").attr_value("Enabled", Scalar::Bool(false));
        assert_eq!(lease.to_json(false), serde_json::json!({"Enabled": false}));
        let doc = Node::new("T").child(Node::blank("Password")).child(lease);
        assert!(
            doc.to_xml()
                .contains(r#"<Password /><LeaseOptions Enabled="false" />"#)
        );
        assert_eq!(doc.to_json(false)["Password"], "");
    }

    #[test]
    fn camel_case_lowers_the_leading_capitals() {
        assert_eq!(camel_case("UID"), "uid");
        assert_eq!(camel_case("TaskId"), "taskId");
        assert_eq!(camel_case("ExternalIP"), "externalIP");
        assert_eq!(camel_case("HTTPServer"), "httpServer");
    }

    #[test]
    fn escapes_text_and_attributes() {
        let xml = Node::new("E")
            .attr("Message", r#"a "b" <c>"#)
            .child(Node::text("T", "x & y"))
            .to_xml();
        assert!(xml.contains("&quot;b&quot; &lt;c&gt;"));
        assert!(xml.contains("x &amp; y"));
    }
}
