//! `/cloud/tenants`, their `/resources` (storage quotas) and `/repositories` (em-api.md §16).
//!
//! Values are checked here and refused with 400 (or 501 for what the simulator does not
//! model: replication, vCD and AD tenants); rules that depend on other objects are EM's, in
//! [`World`], and end in a failed task.

use actix_web::http::{Method, StatusCode};
use uuid::Uuid;

use super::{Call, Ctx, Reply, bad_request, error, list, not_found, parse_id, read_body, start};
use crate::sim::body::{self, Element, Field, Kind, Schema, optional, parse_datetime, required};
use crate::sim::password::PasswordHash;
use crate::sim::render::Node;
use crate::sim::state::{
    Change, NewTenant, Quota, QuotaChange, Tenant, TenantChange, ThrottlingUnit, World,
};
use crate::sim::views;

// -- schemas ---------------------------------------------------------------------------------

const UNIT: Kind = Kind::Enum(ThrottlingUnit::EM);
const FROM_ONE: Kind = Kind::Int {
    min: 1,
    max: i32::MAX as i64,
};
const FROM_ZERO: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as i64,
};
/// "cannot be less than 1GB"
const QUOTA_MB: Kind = Kind::Int {
    min: 1024,
    max: i64::MAX,
};
const POOLS: Kind = Kind::UidList {
    item: "CloudGatewayPoolUid",
    uid_type: "CloudGatewayPool",
    min: 0,
    unique: true,
};

const FAILOVER_HINT: (&str, &str) = (
    "FailoverToOtherGatewaysIfFail",
    "EM spells it <FailoverToOthersGatewaysIfFail> (its schema and JSON examples do) and silently ignores the spelling of its doc tables.",
);
const PUBLIC_IP_HINT: (&str, &str) = ("PublicIPCount", "the element is <PublicIpCount>.");

/// Tenant user names (VBR's rules for Cloud Connect users).
fn tenant_name(text: &str) -> Result<(), String> {
    const FORBIDDEN: &[char] = &[
        '+', ']', '[', ',', '\\', '/', ':', '*', '?', '"', '<', '>', '|', '=', ';', '@',
    ];
    if text.trim().is_empty() {
        return Err("Element <Name> must not be empty.".into());
    }
    if text.chars().count() > 128 {
        return Err("The cloud tenant name is longer than 128 characters.".into());
    }
    if let Some(c) = text.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(format!(
            "The cloud tenant name [{text}] contains [{c}]; a name cannot contain any of + ] [ , \\ / : * ? \" < > | = ; @."
        ));
    }
    if text.ends_with('.') {
        return Err(format!(
            "The cloud tenant name [{text}] must not end with a period."
        ));
    }
    Ok(())
}

const RESOURCE_FIELDS: &[Field] = &[
    required("Name", Kind::Name),
    required("RepositoryUid", Kind::Uid("Repository")),
    required("QuotaMb", QUOTA_MB),
    optional("WanAcceleratorUid", Kind::UidOrEmpty("WanAccelerator")),
    // In the XSDs, in no v13 table or example: accepted and ignored.
    optional("Folder", Kind::Text),
];
const QUOTA_MB_HINT: &[(&str, &str)] = &[(
    "Quota",
    "a new storage quota's size is <QuotaMb> (MB); <Quota> is the name inside <RepositoryQuota> of an existing one.",
)];

/// `BackupResource` inside `CreateCloudTenantSpec/Resources`.
const BACKUP_RESOURCE: Schema =
    Schema::new("BackupResource", RESOURCE_FIELDS).refusing(QUOTA_MB_HINT);

/// `POST /cloud/tenants/{id}/resources`: the same type as `BackupResource`.
pub const CREATE_RESOURCE: Schema = Schema::new("CreateCloudTenantResourceSpec", RESOURCE_FIELDS)
    .refusing(QUOTA_MB_HINT)
    .strict_json();

/// `POST /cloud/tenants`, in the valdy XSD's order (§16.3).
pub const CREATE_TENANT: Schema = Schema::new(
    "CreateCloudTenantSpec",
    &[
        optional("BackupServerIdOrName", Kind::Name),
        required("Name", Kind::Check(tenant_name)),
        optional("Description", Kind::Text),
        optional("Password", Kind::Secret),
        optional("Enabled", Kind::Bool),
        optional("LeaseExpirationDate", Kind::DateTime),
        optional(
            "Resources",
            Kind::List {
                item: &BACKUP_RESOURCE,
                min: 0,
            },
        ),
        optional("ComputeResources", Kind::Any),
        optional("VmCount", Kind::Any),
        optional("ThrottlingEnabled", Kind::Bool),
        optional("ThrottlingSpeedLimit", FROM_ONE),
        optional("ThrottlingSpeedUnit", UNIT),
        optional("PublicIpCount", FROM_ZERO),
        optional("BackupServerUid", Kind::Uid("BackupServer")),
        optional("MaxConcurrentTasks", FROM_ONE),
        optional("BackupProtectionEnabled", Kind::Bool),
        optional("BackupProtectionPeriod", FROM_ONE),
        // The doc's own example writes `VCD`: EM reads this one in any case.
        optional(
            "TenantType",
            Kind::EnumAnyCase(&["Standalone", "vCD", "ActiveDirectory"]),
        ),
        optional("OrganizationRef", Kind::Any),
        optional("VCloudComputeResources", Kind::Any),
        optional(
            "CloudGatewayPools",
            Kind::UidList {
                item: "CloudGatewayPoolUid",
                uid_type: "CloudGatewayPool",
                min: 1,
                unique: true,
            },
        ),
        optional("FailoverToOthersGatewaysIfFail", Kind::Bool),
        optional("Domain", Kind::Any),
    ],
)
.refusing(&[
    FAILOVER_HINT,
    PUBLIC_IP_HINT,
    (
        "BackupServerUID",
        "the element is <BackupServerUid>, after <PublicIpCount> (the doc table's spelling and place are wrong).",
    ),
    (
        "LeaseOptions",
        "a new tenant's lease is <LeaseExpirationDate>, after <Enabled>; <LeaseOptions> belongs to the CloudTenant entity.",
    ),
])
.strict_json();

const LEASE_OPTIONS: Schema = Schema::new("LeaseOptions", &[]).attrs(&[
    required("Enabled", Kind::Bool),
    optional("ExpirationDate", Kind::DateTime),
]);

const REPOSITORY_QUOTA: Schema = Schema::new(
    "RepositoryQuota",
    &[
        required("DisplayName", Kind::Name),
        required("RepositoryUid", Kind::Uid("Repository")),
        optional("WanAcceleratorUid", Kind::UidOrEmpty("WanAccelerator")),
        required("Quota", QUOTA_MB),
        optional("UsedQuota", Kind::Any),
    ],
)
.refusing(&[(
    "QuotaMb",
    "an existing storage quota's size is <Quota> (MB), after <WanAcceleratorUid>; <QuotaMb> is for new quotas.",
)]);

const CLOUD_TENANT_RESOURCE: Schema = Schema::new(
    "CloudTenantResource",
    &[
        optional("Links", Kind::Any),
        required("RepositoryQuota", Kind::Nested(&REPOSITORY_QUOTA)),
    ],
)
.attrs(&[
    required("Id", Kind::Guid),
    optional("Href", Kind::Any),
    optional("Type", Kind::Any),
]);

const TENANT_CREDENTIALS: Schema =
    Schema::new("TenantCredentials", &[optional("Username", Kind::Text)]).refusing(&[(
        "Password",
        "a tenant's password is changed with the entity's own <Password>, its second child.",
    )]);

const STANDALONE_TENANT: Schema = Schema::new(
    "StandaloneTenant",
    &[optional(
        "TenantCredentials",
        Kind::Nested(&TENANT_CREDENTIALS),
    )],
);

const TENANT_TYPE: Schema = Schema::new(
    "TenantType",
    &[
        optional("StandaloneTenant", Kind::Nested(&STANDALONE_TENANT)),
        optional("vCloudTenant", Kind::Any),
        optional("ADTenantType", Kind::Any),
    ],
);

/// `PUT /cloud/tenants/{id}`: the entity, every child optional (`TenantType` is mandatory,
/// but EM answers its absence with a 500, not a 400). Output-only children and `Links` may be
/// sent back and are ignored: tenant clients round-trip whole entities.
pub const EDIT_TENANT: Schema = Schema::new(
    "CloudTenant",
    &[
        optional("Links", Kind::Any),
        optional("Password", Kind::Secret),
        optional("Description", Kind::Text),
        optional("Enabled", Kind::Bool),
        optional("LeaseOptions", Kind::Nested(&LEASE_OPTIONS)),
        optional(
            "Resources",
            Kind::List {
                item: &CLOUD_TENANT_RESOURCE,
                min: 0,
            },
        ),
        optional("LastResult", Kind::Any),
        optional("LastActive", Kind::Any),
        optional("VmCount", Kind::Any),
        optional("ComputeResources", Kind::Any),
        optional("ThrottlingEnabled", Kind::Bool),
        optional("ThrottlingSpeedLimit", FROM_ONE),
        optional("ThrottlingSpeedUnit", UNIT),
        optional("PublicIpCount", FROM_ZERO),
        optional("BackupCount", Kind::Any),
        optional("ReplicaCount", Kind::Any),
        optional("MaxConcurrentTasks", FROM_ONE),
        optional("WorkStationBackupCount", Kind::Any),
        optional("ServerBackupCount", Kind::Any),
        optional("BackupProtectionEnabled", Kind::Bool),
        optional("BackupProtectionPeriod", FROM_ONE),
        optional("TenantType", Kind::Nested(&TENANT_TYPE)),
        optional("VCloudComputeResources", Kind::Any),
        optional("CloudGatewayPools", POOLS),
        optional("FailoverToOthersGatewaysIfFail", Kind::Bool),
    ],
)
.refusing(&[
    FAILOVER_HINT,
    PUBLIC_IP_HINT,
    (
        "LeaseExpirationDate",
        "the entity carries the lease as <LeaseOptions Enabled=\"true\" ExpirationDate=\"…\"/> (or Enabled=\"false\"); <LeaseExpirationDate> is for the create spec.",
    ),
])
.strict_json();

/// Echoed by clients that PUT a whole GET body; ignored.
const OUTPUT_ONLY: &[&str] = &[
    "Links",
    "LastResult",
    "LastActive",
    "VmCount",
    "BackupCount",
    "ReplicaCount",
    "WorkStationBackupCount",
    "ServerBackupCount",
];

// -- routes ----------------------------------------------------------------------------------

/// `/cloud/tenants…`; `rest` is what follows `tenants`.
pub(super) fn cloud_tenants(world: &mut World, ctx: &Ctx, call: &Call, rest: &[&str]) -> Reply {
    let h = ctx.h;
    let m = call.method;
    let entity = call.entity_format();
    let [id, sub @ ..] = rest else {
        return match *m {
            Method::GET => {
                let items = world
                    .tenants_sorted()
                    .into_iter()
                    .map(|t| {
                        if entity {
                            views::tenant_entity(h, world, t)
                        } else {
                            views::tenant_ref(h, world, t, "Ref")
                        }
                    })
                    .collect();
                Reply::Doc(
                    StatusCode::OK,
                    list(entity, "CloudTenants", "CloudTenant", items),
                )
            }
            Method::POST => create_tenant(world, ctx, call),
            _ => method_not_allowed(),
        };
    };
    let Some(tenant) = parse_id(id).and_then(|id| world.tenant(id)).cloned() else {
        return not_found(format!("Cloud tenant [{id}] was not found."));
    };
    match (m.clone(), sub) {
        (Method::GET, []) if entity => {
            Reply::Doc(StatusCode::OK, views::tenant_entity(h, world, &tenant))
        }
        (Method::GET, []) => Reply::Doc(
            StatusCode::OK,
            views::tenant_ref(h, world, &tenant, "EntityRef"),
        ),
        (Method::PUT, []) => edit_tenant(world, ctx, call, &tenant),
        (Method::DELETE, []) => delete_tenant(world, ctx, call, &tenant),
        (_, []) => method_not_allowed(),
        (Method::GET, ["gatewaypools"]) => {
            let items = world
                .pools_of_tenant(tenant.id)
                .into_iter()
                .map(|p| views::pool_ref(h, world, p, "Ref"))
                .collect();
            Reply::Doc(StatusCode::OK, Node::list("EntityReferences", "Ref", items))
        }
        (Method::GET, ["resources"]) => {
            Reply::Doc(StatusCode::OK, views::tenant_resources(h, world, &tenant))
        }
        (Method::POST, ["resources"]) => create_resource(world, ctx, call, &tenant),
        (_, ["gatewaypools" | "resources"]) => method_not_allowed(),
        (_, ["resources", rid]) => {
            let quota =
                parse_id(rid).and_then(|rid| world.quotas(&tenant).find(|q| q.id == rid).cloned());
            let Some(quota) = quota else {
                return not_found(format!(
                    "Storage quota [{rid}] of cloud tenant [{}] was not found.",
                    tenant.id
                ));
            };
            match *m {
                Method::GET => Reply::Doc(
                    StatusCode::OK,
                    views::quota(h, world, &tenant, &quota, true),
                ),
                Method::DELETE => start(world, ctx, Change::DeleteQuota(tenant.id, quota.id)),
                _ => method_not_allowed(),
            }
        }
        (
            _,
            [
                "computeresources" | "subtenants" | "freelicensecounters",
                ..,
            ],
        ) => not_implemented(world, &format!("/cloud/tenants/{{id}}/{}", sub[0])),
        _ => not_found("The resource was not found."),
    }
}

/// `/repositories…`; `rest` is what follows `repositories`.
pub(super) fn repositories(world: &World, ctx: &Ctx, call: &Call, rest: &[&str]) -> Reply {
    let h = ctx.h;
    let entity = call.entity_format();
    if call.method != Method::GET {
        return method_not_allowed();
    }
    match rest {
        [] => {
            let items = world
                .repositories
                .iter()
                .map(|r| {
                    if entity {
                        views::repository_entity(h, world, r)
                    } else {
                        views::repository_ref(h, world, r, "Ref")
                    }
                })
                .collect();
            let doc = list(entity, "Repositories", "Repository", items);
            // EM's English plural in JSON, not `<Item>s`; references stay `Refs`.
            let doc = if entity {
                doc.json_key("Repositories")
            } else {
                doc
            };
            Reply::Doc(StatusCode::OK, doc)
        }
        [id] => match parse_id(id).and_then(|id| world.repository(id)) {
            Some(r) if entity => Reply::Doc(StatusCode::OK, views::repository_entity(h, world, r)),
            Some(r) => Reply::Doc(
                StatusCode::OK,
                views::repository_ref(h, world, r, "EntityRef"),
            ),
            None => not_found(format!("Repository [{id}] was not found.")),
        },
        _ => not_found("The resource was not found."),
    }
}

fn method_not_allowed() -> Reply {
    error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}

/// Replication, vCD and AD tenants are outside what the simulator models (§16.11): 501, and
/// an advisory in the control API's counters rather than a protocol violation.
fn not_implemented(world: &mut World, what: &str) -> Reply {
    world.advise(format!("501: {what}"));
    error(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{what} is not implemented by the simulator (replication resources, vCD and Active Directory tenants)."
        ),
    )
}

// -- writes ----------------------------------------------------------------------------------

fn flag(root: &Element, name: &str) -> Option<bool> {
    root.child_text(name).map(|t| t == "true" || t == "1")
}

fn number(root: &Element, name: &str) -> Option<i64> {
    root.child_text(name).and_then(|t| t.trim().parse().ok())
}

/// A UID the checker has already accepted.
fn uid_of(root: &Element, name: &str, uid_type: &str) -> Option<Uuid> {
    root.child_text(name)
        .and_then(|t| body::parse_uid(uid_type, t.trim()))
}

fn create_tenant(world: &mut World, ctx: &Ctx, call: &Call) -> Reply {
    let root = match read_body(call, &CREATE_TENANT) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let tenant_type = root.child_text("TenantType").unwrap_or("Standalone");
    if !tenant_type.eq_ignore_ascii_case("Standalone") {
        return not_implemented(world, &format!("A {tenant_type} cloud tenant"));
    }
    for name in ["OrganizationRef", "VCloudComputeResources", "Domain"] {
        if root.child(name).is_some() {
            return not_implemented(world, &format!("CreateCloudTenantSpec/{name}"));
        }
    }
    if root
        .child("ComputeResources")
        .is_some_and(Element::has_content)
    {
        return not_implemented(world, "CreateCloudTenantSpec/ComputeResources");
    }
    for legacy in ["BackupServerIdOrName", "VmCount"] {
        if root.child(legacy).is_some() {
            world.advise(format!(
                "CreateCloudTenantSpec/{legacy}: legacy element accepted"
            ));
        }
    }
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
            return bad_request("Element <BackupServerUid> is missing in <CreateCloudTenantSpec>.");
        }
    };
    let Some(server) = server.map(|s| s.id) else {
        return bad_request("Backup server was not found.");
    };
    let Some(password) = root.child_text("Password").filter(|p| !p.is_empty()) else {
        return bad_request(
            "A standalone cloud tenant needs a <Password> (after <Description>); it must not be empty.",
        );
    };
    let name = root.child_text("Name").unwrap_or_default();
    let mut tenant = Tenant::new(Uuid::new_v4(), name, server);
    tenant.password = Some(PasswordHash::new(password));
    tenant.description = root
        .child_text("Description")
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "Created by {} at {}",
                ctx.user,
                chrono::Utc::now().format("%-m/%-d/%Y %-I:%M %p")
            )
        });
    tenant.enabled = flag(&root, "Enabled").unwrap_or(true);
    tenant.lease_expires = root
        .child_text("LeaseExpirationDate")
        .and_then(parse_datetime);
    if let Some(resources) = root.child("Resources") {
        for r in &resources.children {
            tenant.resources.push(new_quota(world, r, "BackupResource"));
        }
    }
    if let Some(v) = flag(&root, "ThrottlingEnabled") {
        tenant.throttling_enabled = v;
    }
    if let Some(v) = number(&root, "ThrottlingSpeedLimit") {
        tenant.throttling_speed_limit = v;
    }
    if let Some(v) = root
        .child_text("ThrottlingSpeedUnit")
        .and_then(ThrottlingUnit::from_em)
    {
        tenant.throttling_speed_unit = v;
    }
    if let Some(v) = number(&root, "PublicIpCount") {
        tenant.public_ip_count = v;
    }
    if let Some(v) = number(&root, "MaxConcurrentTasks") {
        tenant.max_concurrent_tasks = v;
    }
    if let Some(v) = flag(&root, "BackupProtectionEnabled") {
        tenant.backup_protection_enabled = v;
    }
    if let Some(v) = number(&root, "BackupProtectionPeriod") {
        tenant.backup_protection_period = v;
    }
    tenant.failover_to_others_gateways_if_fail = flag(&root, "FailoverToOthersGatewaysIfFail");
    let pools = super::uids(&root, "CloudGatewayPools", "CloudGatewayPool");
    start(
        world,
        ctx,
        Change::CreateTenant(Box::new(NewTenant { tenant, pools })),
    )
}

/// A quota from a checked `BackupResource` or `CreateCloudTenantResourceSpec`.
fn new_quota(world: &mut World, spec: &Element, root: &str) -> Quota {
    if spec.child("Folder").is_some() {
        world.advise(format!("{root}/Folder: accepted and ignored"));
    }
    Quota {
        id: Uuid::new_v4(),
        name: spec.child_text("Name").unwrap_or_default().to_string(),
        repository: uid_of(spec, "RepositoryUid", "Repository").unwrap_or_default(),
        wan_accelerator: uid_of(spec, "WanAcceleratorUid", "WanAccelerator"),
        quota_mb: number(spec, "QuotaMb").unwrap_or_default(),
        used_mb: 0,
        visible_at: None,
    }
}

fn edit_tenant(world: &mut World, ctx: &Ctx, call: &Call, tenant: &Tenant) -> Reply {
    let root = match read_body(call, &EDIT_TENANT) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    for name in ["ComputeResources", "VCloudComputeResources"] {
        if root.child(name).is_some_and(Element::has_content) {
            return not_implemented(world, &format!("CloudTenant/{name}"));
        }
    }
    // What a real EM (9.5 U4 and later) answers when the node is missing.
    let Some(tenant_type) = root.child("TenantType").filter(|t| !t.children.is_empty()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Object reference not set to an instance of an object.",
        );
    };
    if tenant_type.children.len() > 1 {
        return bad_request(
            "Element <TenantType> must hold one of <StandaloneTenant>, <vCloudTenant>, <ADTenantType>.",
        );
    }
    for name in OUTPUT_ONLY {
        if root.child(name).is_some() {
            world.advise(format!("CloudTenant/{name}: output-only element ignored"));
        }
    }
    let lease = match root.child("LeaseOptions") {
        None => None,
        Some(l) if l.attr("Enabled") == Some("true") || l.attr("Enabled") == Some("1") => {
            match l.attr("ExpirationDate").and_then(parse_datetime) {
                Some(at) => Some(Some(at)),
                None => {
                    return bad_request(
                        "<LeaseOptions Enabled=\"true\"> needs an ExpirationDate attribute.",
                    );
                }
            }
        }
        Some(_) => Some(None),
    };
    let mut resources: Vec<QuotaChange> = Vec::new();
    for r in root
        .child("Resources")
        .map(|r| r.children.as_slice())
        .unwrap_or_default()
    {
        let id = r.attr("Id").and_then(parse_id).unwrap_or_default();
        if resources.iter().any(|c| c.id == id) {
            return bad_request(format!(
                "CloudTenantResource [{id}] is listed twice in <Resources>."
            ));
        }
        let Some(q) = r.child("RepositoryQuota") else {
            continue;
        };
        resources.push(QuotaChange {
            id,
            name: q.child_text("DisplayName").unwrap_or_default().to_string(),
            repository: uid_of(q, "RepositoryUid", "Repository").unwrap_or_default(),
            wan_accelerator: q
                .child("WanAcceleratorUid")
                .map(|_| uid_of(q, "WanAcceleratorUid", "WanAccelerator")),
            quota_mb: number(q, "Quota").unwrap_or_default(),
        });
    }
    let change = TenantChange {
        description: root.child_text("Description").map(str::to_string),
        enabled: flag(&root, "Enabled"),
        // The GET body always carries `<Password/>`: empty means "unchanged".
        password: root
            .child_text("Password")
            .filter(|p| !p.is_empty())
            .map(PasswordHash::new),
        lease,
        resources,
        throttling_enabled: flag(&root, "ThrottlingEnabled"),
        throttling_speed_limit: number(&root, "ThrottlingSpeedLimit"),
        throttling_speed_unit: root
            .child_text("ThrottlingSpeedUnit")
            .and_then(ThrottlingUnit::from_em),
        public_ip_count: number(&root, "PublicIpCount"),
        max_concurrent_tasks: number(&root, "MaxConcurrentTasks"),
        backup_protection_enabled: flag(&root, "BackupProtectionEnabled"),
        backup_protection_period: number(&root, "BackupProtectionPeriod"),
        other_type: tenant_type
            .children
            .first()
            .filter(|c| c.name != "StandaloneTenant")
            .map(|c| c.name.clone()),
        pools: root
            .child("CloudGatewayPools")
            .map(|_| super::uids(&root, "CloudGatewayPools", "CloudGatewayPool")),
        failover_to_others_gateways_if_fail: flag(&root, "FailoverToOthersGatewaysIfFail"),
    };
    start(world, ctx, Change::EditTenant(tenant.id, Box::new(change)))
}

fn delete_tenant(world: &mut World, ctx: &Ctx, call: &Call, tenant: &Tenant) -> Reply {
    let include_backups = match call.param("includeBackups") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return bad_request(format!(
                "The value [{v}] of query parameter [includeBackups] is not a boolean (true or false)."
            ));
        }
    };
    start(
        world,
        ctx,
        Change::DeleteTenant {
            id: tenant.id,
            include_backups,
        },
    )
}

fn create_resource(world: &mut World, ctx: &Ctx, call: &Call, tenant: &Tenant) -> Reply {
    let root = match read_body(call, &CREATE_RESOURCE) {
        Ok(root) => root,
        Err(reply) => return reply,
    };
    let quota = new_quota(world, &root, "CreateCloudTenantResourceSpec");
    start(world, ctx, Change::CreateQuota(tenant.id, quota))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_follow_vbr_rules() {
        for ok in ["abc", "ABC Company", "a.b-c_d", &"x".repeat(128)] {
            tenant_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("  ", "empty"),
            (&"x".repeat(129) as &str, "128"),
            ("a+b", "[+]"),
            ("a@b", "[@]"),
            ("a\\b", "[\\]"),
            ("a;b", "[;]"),
            ("abc.", "period"),
        ] {
            let err = tenant_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn xml(schema: &Schema, body: &str) -> Result<(), String> {
        schema.check_xml(&body::parse_xml(body)?)
    }

    const NS: &str = crate::em::xml::NAMESPACE;

    #[test]
    fn the_create_spec_follows_the_xsd_order_and_refuses_table_spellings() {
        let ok = format!(
            r#"<CreateCloudTenantSpec xmlns="{NS}"><Name>abc</Name><Password>pw</Password><Enabled>true</Enabled><LeaseExpirationDate>2099-12-31T00:00:00</LeaseExpirationDate><Resources><BackupResource><Name>Cloud</Name><RepositoryUid>urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101</RepositoryUid><QuotaMb>1024</QuotaMb><WanAcceleratorUid/></BackupResource></Resources><ThrottlingSpeedUnit>MBps</ThrottlingSpeedUnit><BackupServerUid>urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d</BackupServerUid><TenantType>STANDALONE</TenantType><FailoverToOthersGatewaysIfFail>true</FailoverToOthersGatewaysIfFail></CreateCloudTenantSpec>"#
        );
        xml(&CREATE_TENANT, &ok).unwrap();
        let swap = |from: &str, to: &str| ok.replace(from, to);
        let cases = [
            (
                swap(
                    "FailoverToOthersGatewaysIfFail",
                    "FailoverToOtherGatewaysIfFail",
                ),
                "EM spells it <FailoverToOthersGatewaysIfFail>",
            ),
            (
                swap("BackupServerUid", "BackupServerUID"),
                "the element is <BackupServerUid>",
            ),
            (
                swap(
                    "<LeaseExpirationDate>2099-12-31T00:00:00</LeaseExpirationDate>",
                    r#"<LeaseOptions Enabled="true"/>"#,
                ),
                "<LeaseExpirationDate>, after <Enabled>",
            ),
            (swap("QuotaMb", "Quota"), "size is <QuotaMb>"),
            (swap(">MBps<", ">mbps<"), "one of Mbps, KBps, MBps"),
            (swap(">1024<", ">1023<"), "at least 1024"),
            (
                swap(
                    "<Password>pw</Password><Enabled>true</Enabled>",
                    "<Enabled>true</Enabled><Password>pw</Password>",
                ),
                "<Password> is out of order",
            ),
        ];
        for (body, expected) in cases {
            let err = xml(&CREATE_TENANT, &body).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn the_entity_put_takes_leaseoptions_and_quotas_by_id() {
        let quota = r#"<Resources><CloudTenantResource Id="3f2a1c10-0000-4000-8000-00000000e911"><RepositoryQuota><DisplayName>C</DisplayName><RepositoryUid>urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101</RepositoryUid><Quota>2048</Quota><UsedQuota>5</UsedQuota></RepositoryQuota></CloudTenantResource></Resources>"#;
        let body = |inner: &str| {
            format!(r#"<CloudTenant xmlns="{NS}" Type="CloudTenant">{inner}</CloudTenant>"#)
        };
        xml(&EDIT_TENANT, &body(&format!(r#"<Password/><LeaseOptions Enabled="false"/>{quota}<LastResult>Success</LastResult>"#))).unwrap();
        let cases = [
            (
                body(r#"<LeaseExpirationDate>2099-12-31T00:00:00Z</LeaseExpirationDate>"#),
                "<LeaseOptions Enabled",
            ),
            (
                body(&quota.replace(r#" Id="3f2a1c10-0000-4000-8000-00000000e911""#, "")),
                "Attribute [Id] is missing",
            ),
            (
                body(&quota.replace("<Quota>2048</Quota>", "<QuotaMb>2048</QuotaMb>")),
                "size is <Quota> (MB)",
            ),
            (body(r#"<LeaseOptions/>"#), "Attribute [Enabled] is missing"),
            (
                body(
                    "<TenantType><StandaloneTenant><TenantCredentials><Username>a</Username><Password>x</Password></TenantCredentials></StandaloneTenant></TenantType>",
                ),
                "changed with the entity's own <Password>",
            ),
        ];
        for (body, expected) in cases {
            let err = xml(&EDIT_TENANT, &body).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
