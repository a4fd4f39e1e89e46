//! The XML the client writes matches EM's documented examples element for element: same
//! elements, same order, same text, same namespace (whitespace and the unused `xsd`/`xsi`
//! declarations of the examples aside).

use em_gateway::em::xml::{
    self, CloudGatewayEdit, CloudGatewayPoolEdit, CloudGatewayUids, CloudTenantUids,
    CreateCloudGatewayPoolSpec, CreateCloudGatewaySpec, Namespace, NetworkMode,
};
use em_gateway::sim::body::{Element, parse_xml};

/// Element names, namespaces, attributes (but the informational `Type`) and trimmed text.
fn shape(e: &Element) -> String {
    let attrs: Vec<String> = e
        .attrs
        .iter()
        .filter(|(k, _)| k != "Type")
        .map(|(k, v)| format!("@{k}={v}"))
        .collect();
    let children: Vec<String> = e.children.iter().map(shape).collect();
    format!(
        "{}{{{}}}[{}]({}){}",
        e.name,
        e.namespace.as_deref().unwrap_or("-"),
        attrs.join(","),
        e.text.trim(),
        if children.is_empty() {
            String::new()
        } else {
            format!("<{}>", children.join(";"))
        }
    )
}

fn assert_same(ours: &str, documented: &str) {
    assert!(
        ours.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#),
        "{ours}"
    );
    let ours_tree = parse_xml(ours).expect("our XML parses");
    let doc_tree = parse_xml(documented).expect("the documented XML parses");
    assert_eq!(
        shape(&ours_tree),
        shape(&doc_tree),
        "\nours: {ours}\ndocs: {documented}"
    );
}

/// `POST /cloud/gateways`, from the seed page's example.
#[test]
fn create_cloud_gateway_spec_matches_the_documented_example() {
    let documented = r#"<?xml version="1.0" encoding="utf-8"?> <CreateCloudGatewaySpec xmlns="http://www.veeam.com/ent/v1.0" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">   <ServerHostName>172.16.13.119</ServerHostName>   <Description>Cloud gateway server 01</Description>   <ExternalPort>6180</ExternalPort>   <NetworkType>Direct</NetworkType>   <InternalPort>6180</InternalPort>   <BackupServerUid>urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d</BackupServerUid> </CreateCloudGatewaySpec>"#;
    let spec = CreateCloudGatewaySpec {
        xmlns: Namespace,
        server_host_name: "172.16.13.119".into(),
        description: Some("Cloud gateway server 01".into()),
        external_ip: None,
        external_port: Some(6180),
        network_type: NetworkMode::Direct,
        internal_port: Some(6180),
        backup_server_uid: "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d".into(),
    };
    assert_same(&xml::to_xml(&spec).unwrap(), documented);
}

/// The NAT variant: `ExternalIp` (not `ExternalIP`) sits between `Description` and
/// `ExternalPort`.
#[test]
fn create_nat_cloud_gateway_spec_puts_external_ip_in_its_place() {
    let documented = r#"<?xml version="1.0" encoding="utf-8"?>
<CreateCloudGatewaySpec xmlns="http://www.veeam.com/ent/v1.0">
  <ServerHostName>gw02.example.local</ServerHostName>
  <Description>Frankfurt NAT gateway</Description>
  <ExternalIp>203.0.113.20</ExternalIp>
  <ExternalPort>6180</ExternalPort>
  <NetworkType>NAT</NetworkType>
  <InternalPort>6180</InternalPort>
  <BackupServerUid>urn:veeam:BackupServer:3f2a1c10-0000-4000-8000-00000000b501</BackupServerUid>
</CreateCloudGatewaySpec>"#;
    let spec = CreateCloudGatewaySpec {
        xmlns: Namespace,
        server_host_name: "gw02.example.local".into(),
        description: Some("Frankfurt NAT gateway".into()),
        external_ip: Some("203.0.113.20".into()),
        external_port: Some(6180),
        network_type: NetworkMode::Nat,
        internal_port: Some(6180),
        backup_server_uid: "urn:veeam:BackupServer:3f2a1c10-0000-4000-8000-00000000b501".into(),
    };
    assert_same(&xml::to_xml(&spec).unwrap(), documented);
}

/// `POST /cloud/gatewayPools`, from the seed page's full example.
#[test]
fn create_cloud_gateway_pool_spec_matches_the_documented_example() {
    let documented = r#"<?xml version="1.0" encoding="utf-8"?> <CreateCloudGatewayPoolSpec xmlns="http://www.veeam.com/ent/v1.0" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">   <Name>GatewayPool 1</Name>   <Description>Created by REST API</Description>   <CloudGateways>     <CloudGatewayUid>urn:veeam:CloudGateway:3e4e6d17-ee2a-430f-807c-8d92af2a5551</CloudGatewayUid>   </CloudGateways>   <CloudTenants>     <CloudTenantUid>urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0</CloudTenantUid>   </CloudTenants>   <BackupServerUid>urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d</BackupServerUid> </CreateCloudGatewayPoolSpec>"#;
    let spec = CreateCloudGatewayPoolSpec {
        xmlns: Namespace,
        name: "GatewayPool 1".into(),
        description: Some("Created by REST API".into()),
        cloud_gateways: CloudGatewayUids {
            uids: vec!["urn:veeam:CloudGateway:3e4e6d17-ee2a-430f-807c-8d92af2a5551".into()],
        },
        cloud_tenants: Some(CloudTenantUids {
            uids: vec!["urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0".into()],
        }),
        backup_server_uid: "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d".into(),
    };
    assert_same(&xml::to_xml(&spec).unwrap(), documented);
}

/// `PUT /cloud/gateways/{id}` takes the entity: `NetworkMode` and `ExternalIP`.
#[test]
fn cloud_gateway_edit_matches_the_documented_example() {
    let documented = r#"<CloudGateway xmlns="http://www.veeam.com/ent/v1.0" Type="CloudGateway">
  <Enabled>false</Enabled>
  <NetworkMode>Direct</NetworkMode>
  <ExternalIP>198.51.100.10</ExternalIP>
  <ExternalPort>6180</ExternalPort>
  <InternalPort>6180</InternalPort>
  <Description>disabled for maintenance</Description>
</CloudGateway>"#;
    let edit = CloudGatewayEdit {
        xmlns: Namespace,
        enabled: Some(false),
        network_mode: NetworkMode::Direct,
        external_ip: Some("198.51.100.10".into()),
        external_port: Some(6180),
        internal_port: Some(6180),
        description: Some("disabled for maintenance".into()),
    };
    assert_same(&xml::to_xml(&edit).unwrap(), documented);
}

/// `PUT /cloud/gatewayPools/{id}`: the name is the `Name` attribute, then the entity's
/// elements.
#[test]
fn cloud_gateway_pool_edit_has_the_name_as_attribute() {
    let documented = r#"<CloudGatewayPool xmlns="http://www.veeam.com/ent/v1.0" Type="CloudGatewayPool" Name="EU pool">
  <Description>pool for EU tenants</Description>
  <CloudGateways>
    <CloudGatewayUid>urn:veeam:CloudGateway:3f2a1c10-0000-4000-8000-00000000c701</CloudGatewayUid>
  </CloudGateways>
  <CloudTenants/>
</CloudGatewayPool>"#;
    let edit = CloudGatewayPoolEdit {
        xmlns: Namespace,
        name: "EU pool".into(),
        description: Some("pool for EU tenants".into()),
        cloud_gateways: CloudGatewayUids {
            uids: vec!["urn:veeam:CloudGateway:3f2a1c10-0000-4000-8000-00000000c701".into()],
        },
        cloud_tenants: CloudTenantUids::default(),
    };
    assert_same(&xml::to_xml(&edit).unwrap(), documented);
}

/// Text is escaped: a description with markup characters survives the round trip.
#[test]
fn text_with_markup_characters_is_escaped() {
    let spec = CreateCloudGatewaySpec {
        xmlns: Namespace,
        server_host_name: "gw.example".into(),
        description: Some(r#"R&D <lab> "north""#.into()),
        external_ip: None,
        external_port: None,
        network_type: NetworkMode::Direct,
        internal_port: None,
        backup_server_uid: "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d".into(),
    };
    let text = xml::to_xml(&spec).unwrap();
    let tree = parse_xml(&text).unwrap();
    assert_eq!(tree.child_text("Description"), Some(r#"R&D <lab> "north""#));
}
