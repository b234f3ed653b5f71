//! The Agent Engine surface in the OpenAPI document. Its paths are no axum route templates
//! (the one route takes them all), so the document describes them here, as JSON: every
//! operation in the `projects/{project}/locations/{location}/` form (the bare form,
//! `/v1beta1/reasoningEngines/...`, is the same operation), its parameters, bodies and answers.
//! Errors are Google's error body (`GoogleError`), declared by `routes::SecuritySchemes`.

use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

const ENGINE: &str = "/v1beta1/projects/{project}/locations/{location}/reasoningEngines/{engine}";

/// Adds the surface's paths and schemas to the document.
pub struct AgentEngineDocument;

impl utoipa::Modify for AgentEngineDocument {
    fn modify(&self, openapi: &mut OpenApi) {
        let paths: utoipa::openapi::Paths =
            serde_json::from_value(paths()).expect("the Agent Engine paths are an OpenAPI paths object");
        openapi.paths.paths.extend(paths.paths);
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in schemas() {
            let schema = serde_json::from_value(schema).expect("an Agent Engine schema is a JSON schema");
            components.schemas.insert(name.to_owned(), schema);
        }
        openapi.tags.get_or_insert_with(Vec::new).push(
            serde_json::from_value(json!({
                "name": "agent-engine",
                "description": "Google's Vertex AI Agent Engine Sessions + Memory Bank API, as ADK and the Vertex AI \
                    SDK send it; also under /v1beta1/reasoningEngines/{engine}/... Message fields may be \
                    camelCase or snake_case; unknown fields are refused. Errors are Google's error body."
            }))
            .expect("a tag"),
        );
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn path_parameter(name: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "pattern": pattern}})
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

const ID: &str = "^[A-Za-z0-9_-]{1,128}$";

/// The parameters of a path: the engine's, and one per `{name}` after it.
fn parameters_of(path: &str) -> Vec<Value> {
    let mut parameters = vec![
        path_parameter("project", "^[A-Za-z0-9_.-]{1,128}$"),
        path_parameter("location", "^[A-Za-z0-9_.-]{1,128}$"),
        path_parameter("engine", "^[A-Za-z0-9_-]{1,63}$"),
    ];
    for name in ["session", "memory", "revision", "operation"] {
        if path.contains(&format!("{{{name}}}")) {
            parameters.push(path_parameter(name, ID));
        }
    }
    parameters
}

fn page_parameters() -> Vec<Value> {
    vec![
        query(
            "pageSize",
            json!({"type": "integer", "minimum": 0}),
            "Page size (0: the default; larger ones are capped)",
        ),
        query("pageToken", json!({"type": "string"}), "The nextPageToken of the previous page"),
        query("filter", json!({"type": "string", "maxLength": 2000}), "An AIP-160 filter"),
    ]
}

/// One operation: `body` and `answer` name schemas; `extra` are its query parameters.
fn operation(path: &str, summary: &str, extra: Vec<Value>, body: Option<&str>, answer: &str) -> Value {
    let mut parameters = parameters_of(path);
    parameters.extend(extra);
    let mut operation = json!({
        "tags": ["agent-engine"],
        "summary": summary,
        "operationId": summary.to_lowercase().replace([' ', ':'], "_"),
        "parameters": parameters,
        "responses": {"200": {"description": "Success", "content": {"application/json": {"schema": reference(answer)}}}},
    });
    if let Some(body) = body {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    operation
}

fn paths() -> Value {
    let at = |rest: &str| format!("{ENGINE}{rest}");
    let mut paths = serde_json::Map::new();
    let mut add = |path: String, method: &str, operation: Value| {
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = operation;
    };
    let mask = || {
        query("updateMask", json!({"type": "string"}), "Comma-separated fields to update (default: every field sent)")
    };
    let engine = at("");
    add(engine.clone(), "get", operation(&engine, "Get reasoning engine", vec![], None, "AgentEngineReasoningEngine"));
    let sessions = at("/sessions");
    let session_id =
        query("sessionId", json!({"type": "string", "pattern": ID}), "The new session's id (default: a UUID)");
    add(
        sessions.clone(),
        "post",
        operation(
            &sessions,
            "Create session",
            vec![session_id],
            Some("AgentEngineSessionInput"),
            "AgentEngineOperation",
        ),
    );
    add(
        sessions.clone(),
        "get",
        operation(&sessions, "List sessions", page_parameters(), None, "AgentEngineSessionList"),
    );
    let session = at("/sessions/{session}");
    add(session.clone(), "get", operation(&session, "Get session", vec![], None, "AgentEngineSession"));
    add(
        session.clone(),
        "patch",
        operation(&session, "Update session", vec![mask()], Some("AgentEngineSessionInput"), "AgentEngineSession"),
    );
    add(session.clone(), "delete", operation(&session, "Delete session", vec![], None, "AgentEngineOperation"));
    let append = at("/sessions/{session}:appendEvent");
    add(
        append.clone(),
        "post",
        operation(&append, "Append event", vec![], Some("AgentEngineEventInput"), "AgentEngineEmpty"),
    );
    let events = at("/sessions/{session}/events");
    add(events.clone(), "get", operation(&events, "List events", page_parameters(), None, "AgentEngineEventList"));
    let session_operation = at("/sessions/{session}/operations/{operation}");
    add(
        session_operation.clone(),
        "get",
        operation(&session_operation, "Get session operation", vec![], None, "AgentEngineOperation"),
    );
    let memories = at("/memories");
    let memory_id =
        query("memoryId", json!({"type": "string", "pattern": ID}), "The new memory's id (default: a UUID)");
    add(
        memories.clone(),
        "post",
        operation(&memories, "Create memory", vec![memory_id], Some("AgentEngineMemoryInput"), "AgentEngineOperation"),
    );
    let mut list = page_parameters();
    list.push(query(
        "orderBy",
        json!({"type": "string"}),
        "create_time or update_time, each optionally desc (default: create_time desc)",
    ));
    add(memories.clone(), "get", operation(&memories, "List memories", list, None, "AgentEngineMemoryList"));
    let memory = at("/memories/{memory}");
    add(memory.clone(), "get", operation(&memory, "Get memory", vec![], None, "AgentEngineMemory"));
    add(
        memory.clone(),
        "patch",
        operation(&memory, "Update memory", vec![mask()], Some("AgentEngineMemoryInput"), "AgentEngineOperation"),
    );
    add(memory.clone(), "delete", operation(&memory, "Delete memory", vec![], None, "AgentEngineOperation"));
    let rollback = at("/memories/{memory}:rollback");
    add(
        rollback.clone(),
        "post",
        operation(&rollback, "Roll back memory", vec![], Some("AgentEngineRollbackInput"), "AgentEngineOperation"),
    );
    let revisions = at("/memories/{memory}/revisions");
    add(
        revisions.clone(),
        "get",
        operation(&revisions, "List memory revisions", page_parameters(), None, "AgentEngineRevisionList"),
    );
    let revision = at("/memories/{memory}/revisions/{revision}");
    add(revision.clone(), "get", operation(&revision, "Get memory revision", vec![], None, "AgentEngineRevision"));
    let memory_operation = at("/memories/{memory}/operations/{operation}");
    add(
        memory_operation.clone(),
        "get",
        operation(&memory_operation, "Get memory operation", vec![], None, "AgentEngineOperation"),
    );
    for (method, body, answer, summary) in [
        ("generate", "AgentEngineGenerateInput", "AgentEngineOperation", "Generate memories"),
        ("ingestEvents", "AgentEngineIngestInput", "AgentEngineOperation", "Ingest events"),
        ("retrieve", "AgentEngineRetrieveInput", "AgentEngineRetrieved", "Retrieve memories"),
        ("retrieveProfiles", "AgentEngineRetrieveProfilesInput", "AgentEngineProfiles", "Retrieve profiles"),
        ("purge", "AgentEnginePurgeInput", "AgentEngineOperation", "Purge memories"),
    ] {
        let path = at(&format!("/memories:{method}"));
        add(path.clone(), "post", operation(&path, summary, vec![], Some(body), answer));
    }
    let engine_operation = at("/operations/{operation}");
    add(
        engine_operation.clone(),
        "get",
        operation(&engine_operation, "Get operation", vec![], None, "AgentEngineOperation"),
    );
    Value::Object(paths)
}

fn object(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

fn schemas() -> Vec<(&'static str, Value)> {
    let text = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    let duration =
        json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?s$", "description": "Seconds, as \"3600s\""});
    let map = json!({"type": "object"});
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let scope = json!({"type": "object", "minProperties": 1, "maxProperties": 32,
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}});
    let topic = json!({"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
        "managedMemoryTopic": {"type": "string", "enum": ["USER_PERSONAL_INFO", "USER_PREFERENCES", "KEY_CONVERSATION_DETAILS", "EXPLICIT_INSTRUCTIONS"]},
        "customMemoryTopicLabel": {"type": "string", "minLength": 1, "maxLength": 64},
    }});
    let metadata_value = json!({"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
        "stringValue": text, "doubleValue": {"type": "number"}, "boolValue": {"type": "boolean"}, "timestampValue": time,
    }});
    let metadata = json!({"type": "object", "additionalProperties": metadata_value.clone()});
    let events = json!({"type": "array", "minItems": 1, "items": {"type": "object", "required": ["content"], "properties": {
        "content": map, "eventId": text, "eventTime": time,
    }}});
    let filter_groups = json!({"type": "array", "items": {"type": "object", "properties": {"filters": {"type": "array", "items": {
    "type": "object", "required": ["key", "value"], "properties": {
        "key": {"type": "string", "minLength": 1},
        "op": {"type": "string", "enum": ["OPERATOR_UNSPECIFIED", "EQUAL", "GREATER_THAN", "LESS_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN_OR_EQUAL", "NOT_EQUAL"]},
        "value": metadata_value, "negate": {"type": "boolean"},
    }}}}}});
    let operation = object(json!({"name": text, "done": {"type": "boolean"}, "response": map, "error": map}));
    let session = object(json!({
        "name": text, "createTime": time, "updateTime": time, "userId": text, "sessionState": map,
        "displayName": text, "labels": strings, "expireTime": time,
    }));
    let memory = object(json!({
        "name": text, "fact": text, "scope": strings, "createTime": time, "updateTime": time,
        "topics": {"type": "array", "items": topic.clone()}, "metadata": metadata.clone(), "displayName": text,
        "description": text, "expireTime": time, "memoryType": text,
    }));
    let event = object(json!({
        "name": text, "author": text, "invocationId": text, "timestamp": time, "content": map, "actions": map,
        "eventMetadata": map, "errorCode": text, "errorMessage": text, "rawEvent": map,
    }));
    let revision = object(json!({"name": text, "createTime": time, "fact": text, "labels": strings,
        "extractedMemories": {"type": "array", "items": object(json!({"fact": text}))}}));
    let list = |key: &str, item: &str| {
        object(json!({key: {"type": "array", "items": reference(item)}, "nextPageToken": text}))
    };
    vec![
        (
            "GoogleError",
            json!({"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message", "status"],
                "properties": {"code": {"type": "integer"}, "message": text, "status": text, "details": {"type": "array"}},
            }}}),
        ),
        ("AgentEngineEmpty", json!({"type": "object"})),
        ("AgentEngineReasoningEngine", object(json!({"name": text, "displayName": text}))),
        ("AgentEngineOperation", operation),
        ("AgentEngineSession", session),
        ("AgentEngineSessionList", list("sessions", "AgentEngineSession")),
        (
            "AgentEngineSessionInput",
            object(json!({
                "userId": {"type": "string", "minLength": 1, "maxLength": 256}, "sessionState": map,
                "displayName": text, "labels": strings, "ttl": duration, "expireTime": time,
            })),
        ),
        ("AgentEngineEvent", event),
        ("AgentEngineEventList", list("sessionEvents", "AgentEngineEvent")),
        (
            "AgentEngineEventInput",
            object(json!({
                "author": text, "invocationId": text, "timestamp": time, "content": map, "actions": map,
                "eventMetadata": map, "errorCode": text, "errorMessage": text, "rawEvent": map,
            })),
        ),
        ("AgentEngineMemory", memory),
        ("AgentEngineMemoryList", list("memories", "AgentEngineMemory")),
        (
            "AgentEngineMemoryInput",
            object(json!({
                "fact": {"type": "string", "minLength": 1}, "scope": scope, "displayName": text, "description": text,
                "ttl": duration, "expireTime": time, "revisionTtl": duration, "revisionExpireTime": time,
                "revisionLabels": strings, "disableMemoryRevisions": {"type": "boolean"},
                "topics": {"type": "array", "items": topic.clone()}, "metadata": metadata.clone(),
            })),
        ),
        ("AgentEngineRevision", revision),
        ("AgentEngineRevisionList", list("memoryRevisions", "AgentEngineRevision")),
        (
            "AgentEngineRollbackInput",
            json!({"type": "object", "required": ["targetRevisionId"], "properties": {"targetRevisionId": text}}),
        ),
        (
            "AgentEngineGenerateInput",
            object(json!({
                "vertexSessionSource": {"type": "object", "required": ["session"], "properties": {"session": text, "startTime": time, "endTime": time}},
                "directContentsSource": {"type": "object", "properties": {"events": events.clone()}},
                "directMemoriesSource": {"type": "object", "properties": {"directMemories": {"type": "array", "items": {
                    "type": "object", "required": ["fact"], "properties": {"fact": text, "topics": {"type": "array", "items": topic.clone()}}}}}},
                "scope": scope, "disableConsolidation": {"type": "boolean"}, "revisionLabels": strings,
                "revisionTtl": duration, "revisionExpireTime": time, "disableMemoryRevisions": {"type": "boolean"},
                "metadata": metadata.clone(),
                "metadataMergeStrategy": {"type": "string", "enum": ["METADATA_MERGE_STRATEGY_UNSPECIFIED", "MERGE", "OVERWRITE", "REQUIRE_EXACT_MATCH"]},
                "allowedTopics": {"type": "array", "items": topic},
            })),
        ),
        (
            "AgentEngineIngestInput",
            json!({"type": "object", "required": ["scope"], "properties": {
                "scope": scope, "streamId": {"type": "string", "maxLength": 128},
                "directContentsSource": {"type": "object", "properties": {"events": events}},
                "generationTriggerConfig": {"type": "object", "properties": {"generationRule": {"type": "object", "properties": {
                    "idleDuration": duration, "fixedInterval": duration, "eventCount": {"type": "integer", "minimum": 0},
                    "overlapEventCount": {"type": "integer", "minimum": 0}}}}},
                "forceFlush": {"type": "boolean"}, "metadata": metadata,
            }}),
        ),
        (
            "AgentEngineRetrieveInput",
            json!({"type": "object", "required": ["scope"], "properties": {
                "scope": scope,
                "similaritySearchParams": {"type": "object", "required": ["searchQuery"], "properties": {
                    "searchQuery": {"type": "string", "minLength": 1, "maxLength": 2000}, "topK": {"type": "integer", "minimum": 0}}},
                "simpleRetrievalParams": {"type": "object", "properties": {"pageSize": {"type": "integer", "minimum": 0}, "pageToken": text}},
                "filter": {"type": "string", "maxLength": 2000}, "filterGroups": filter_groups.clone(),
                "memoryTypes": {"type": "array", "items": {"type": "string", "enum": ["MEMORY_TYPE_UNSPECIFIED", "NATURAL_LANGUAGE_COLLECTION", "STRUCTURED_PROFILE"]}},
            }}),
        ),
        (
            "AgentEngineRetrieved",
            object(json!({"retrievedMemories": {"type": "array", "items": object(json!({
            "memory": reference("AgentEngineMemory"), "distance": {"type": "number"}}))}})),
        ),
        (
            "AgentEngineProfiles",
            object(json!({"profiles": {"type": "object", "additionalProperties": object(json!({
                "schemaId": text, "profile": {"type": "object", "additionalProperties": text}}))}})),
        ),
        (
            "AgentEngineRetrieveProfilesInput",
            object(json!({"scope": scope, "schemaIds": {"type": "array", "items": text}})),
        ),
        (
            "AgentEnginePurgeInput",
            object(
                json!({"filter": {"type": "string", "maxLength": 2000}, "filterGroups": filter_groups, "force": {"type": "boolean"}}),
            ),
        ),
    ]
}
