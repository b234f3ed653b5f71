//! Conversions between Qdrant's gRPC messages and qdrant-edge's engine types.

use std::collections::HashMap;

use qdrant_client::qdrant as grpc;
use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::r#match::MatchValue as GrpcMatch;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors::VectorsOptions;
use qdrant_client::qdrant::vectors_output::VectorsOptions as VectorsOptionsOut;
use qdrant_client::qdrant::{with_payload_selector, with_vectors_selector};
use qdrant_edge as edge;
use qdrant_edge::external::ordered_float::OrderedFloat;
use serde_json::Value as JsonValue;

use crate::error::{EdgeError, EdgeResult};

pub(crate) fn point_id_from_grpc(point_id: &grpc::PointId) -> EdgeResult<edge::PointId> {
    match &point_id.point_id_options {
        Some(PointIdOptions::Num(num)) => Ok(edge::PointId::NumId(*num)),
        Some(PointIdOptions::Uuid(uuid)) => uuid::Uuid::parse_str(uuid)
            .map(edge::PointId::Uuid)
            .map_err(|err| EdgeError::bad_input(format!("Unable to parse UUID: {uuid}: {err}"))),
        None => Err(EdgeError::bad_input("point id is empty")),
    }
}

pub(crate) fn point_ids_from_grpc(point_ids: &[grpc::PointId]) -> EdgeResult<Vec<edge::PointId>> {
    point_ids.iter().map(point_id_from_grpc).collect()
}

pub(crate) fn point_id_to_grpc(point_id: edge::PointId) -> grpc::PointId {
    let options = match point_id {
        edge::PointId::NumId(num) => PointIdOptions::Num(num),
        edge::PointId::Uuid(uuid) => PointIdOptions::Uuid(uuid.hyphenated().to_string()),
    };
    grpc::PointId { point_id_options: Some(options) }
}

pub(crate) fn payload_from_grpc(payload: HashMap<String, grpc::Value>) -> edge::Payload {
    edge::Payload(payload.into_iter().map(|(key, value)| (key, value_from_grpc(value))).collect())
}

fn value_from_grpc(value: grpc::Value) -> JsonValue {
    match value.kind {
        None | Some(Kind::NullValue(_)) => JsonValue::Null,
        Some(Kind::DoubleValue(double)) => {
            serde_json::Number::from_f64(double).map(JsonValue::Number).unwrap_or(JsonValue::Null)
        }
        Some(Kind::IntegerValue(integer)) => JsonValue::from(integer),
        Some(Kind::StringValue(string)) => JsonValue::String(string),
        Some(Kind::BoolValue(flag)) => JsonValue::Bool(flag),
        Some(Kind::StructValue(fields)) => {
            JsonValue::Object(fields.fields.into_iter().map(|(key, value)| (key, value_from_grpc(value))).collect())
        }
        Some(Kind::ListValue(list)) => JsonValue::Array(list.values.into_iter().map(value_from_grpc).collect()),
    }
}

pub(crate) fn payload_to_grpc(payload: Option<edge::Payload>) -> HashMap<String, grpc::Value> {
    payload
        .map(|payload| payload.0.into_iter().map(|(key, value)| (key, value_to_grpc(value))).collect())
        .unwrap_or_default()
}

fn value_to_grpc(value: JsonValue) -> grpc::Value {
    let kind = match value {
        JsonValue::Null => Kind::NullValue(grpc::NullValue::NullValue.into()),
        JsonValue::Bool(flag) => Kind::BoolValue(flag),
        JsonValue::Number(number) => match number.as_i64() {
            Some(integer) => Kind::IntegerValue(integer),
            None => Kind::DoubleValue(number.as_f64().unwrap_or(f64::NAN)),
        },
        JsonValue::String(string) => Kind::StringValue(string),
        JsonValue::Array(values) => {
            Kind::ListValue(grpc::ListValue { values: values.into_iter().map(value_to_grpc).collect() })
        }
        JsonValue::Object(fields) => Kind::StructValue(grpc::Struct {
            fields: fields.into_iter().map(|(key, value)| (key, value_to_grpc(value))).collect(),
        }),
    };
    grpc::Value { kind: Some(kind) }
}

/// The unnamed dense vector of a point, in either the current (`vector: Dense`) or the
/// deprecated (`data`) form of `Vector`. A named map is accepted when it only holds `""`.
#[allow(deprecated)]
pub(crate) fn dense_vector_from_grpc(vectors: Option<grpc::Vectors>) -> EdgeResult<Vec<f32>> {
    let vector = match vectors.and_then(|vectors| vectors.vectors_options) {
        Some(VectorsOptions::Vector(vector)) => vector,
        Some(VectorsOptions::Vectors(mut named)) => {
            if let Some(name) = named.vectors.keys().find(|name| !name.is_empty()) {
                return Err(EdgeError::bad_input(format!("Not existing vector name error: {name}")));
            }
            named.vectors.remove("").ok_or_else(|| EdgeError::bad_input("the point has no vector"))?
        }
        None => return Err(EdgeError::bad_input("the point has no vector")),
    };
    match vector.vector {
        Some(grpc::vector::Vector::Dense(dense)) => Ok(dense.data),
        Some(_) => Err(EdgeError::bad_input("only dense vectors are supported by the qdrant-edge test server")),
        None if vector.indices.is_some() || vector.vectors_count.is_some() => {
            Err(EdgeError::bad_input("only dense vectors are supported by the qdrant-edge test server"))
        }
        None => Ok(vector.data),
    }
}

/// The dense vector of a `VectorInput`; other inputs are not supported.
pub(crate) fn dense_input_from_grpc(input: grpc::VectorInput) -> EdgeResult<Vec<f32>> {
    match input.variant {
        Some(grpc::vector_input::Variant::Dense(dense)) => Ok(dense.data),
        Some(grpc::vector_input::Variant::Id(_)) => {
            Err(EdgeError::unimplemented("a query by point id (VectorInput::Id)"))
        }
        Some(_) => Err(EdgeError::unimplemented("a query vector other than a dense one")),
        None => Err(EdgeError::bad_input("the query vector is empty")),
    }
}

/// Checks a vector against the collection's size, with Qdrant's message.
pub(crate) fn check_dimension(expected: u64, vector: &[f32]) -> EdgeResult<()> {
    if vector.len() as u64 == expected {
        Ok(())
    } else {
        Err(EdgeError::bad_input(format!("Vector dimension error: expected dim: {expected}, got {}", vector.len())))
    }
}

pub(crate) fn with_payload_from_grpc(
    selector: Option<grpc::WithPayloadSelector>,
    default: bool,
) -> EdgeResult<edge::WithPayloadInterface> {
    let Some(options) = selector.and_then(|selector| selector.selector_options) else {
        return Ok(edge::WithPayloadInterface::Bool(default));
    };
    Ok(match options {
        with_payload_selector::SelectorOptions::Enable(enable) => edge::WithPayloadInterface::Bool(enable),
        with_payload_selector::SelectorOptions::Include(include) => {
            edge::WithPayloadInterface::Selector(edge::PayloadSelector::Include(edge::PayloadSelectorInclude {
                include: keys_from_grpc(&include.fields)?,
            }))
        }
        with_payload_selector::SelectorOptions::Exclude(exclude) => {
            edge::WithPayloadInterface::Selector(edge::PayloadSelector::Exclude(edge::PayloadSelectorExclude {
                exclude: keys_from_grpc(&exclude.fields)?,
            }))
        }
    })
}

pub(crate) fn with_vectors_from_grpc(selector: Option<grpc::WithVectorsSelector>) -> edge::WithVector {
    match selector.and_then(|selector| selector.selector_options) {
        None => edge::WithVector::Bool(false),
        Some(with_vectors_selector::SelectorOptions::Enable(enable)) => edge::WithVector::Bool(enable),
        Some(with_vectors_selector::SelectorOptions::Include(include)) => edge::WithVector::Selector(include.names),
    }
}

pub(crate) fn search_params_from_grpc(params: Option<grpc::SearchParams>) -> Option<edge::SearchParams> {
    params.map(|params| edge::SearchParams {
        hnsw_ef: params.hnsw_ef.map(|ef| usize::try_from(ef).unwrap_or(usize::MAX)),
        exact: params.exact.unwrap_or(false),
        indexed_only: params.indexed_only.unwrap_or(false),
        ..edge::SearchParams::default()
    })
}

#[allow(deprecated)]
fn vectors_to_grpc(vector: Option<edge::VectorStructInternal>) -> Option<grpc::VectorsOutput> {
    let dense = |data: Vec<f32>| grpc::VectorOutput {
        // The deprecated field is filled too, for clients that still read it.
        data: data.clone(),
        vector: Some(grpc::vector_output::Vector::Dense(grpc::DenseVector { data })),
        ..grpc::VectorOutput::default()
    };
    let options = match vector? {
        edge::VectorStructInternal::Single(data) => VectorsOptionsOut::Vector(dense(data)),
        edge::VectorStructInternal::Named(mut named) => {
            if named.len() == 1
                && let Some(edge::VectorInternal::Dense(data)) = named.remove("")
            {
                VectorsOptionsOut::Vector(dense(data))
            } else {
                VectorsOptionsOut::Vectors(grpc::NamedVectorsOutput {
                    vectors: named
                        .into_iter()
                        .filter_map(|(name, vector)| match vector {
                            edge::VectorInternal::Dense(data) => Some((name, dense(data))),
                            _ => None,
                        })
                        .collect(),
                })
            }
        }
        edge::VectorStructInternal::MultiDense(_) => return None,
    };
    Some(grpc::VectorsOutput { vectors_options: Some(options) })
}

pub(crate) fn scored_point_to_grpc(point: edge::ScoredPoint) -> grpc::ScoredPoint {
    grpc::ScoredPoint {
        id: Some(point_id_to_grpc(point.id)),
        payload: payload_to_grpc(point.payload),
        score: point.score,
        version: point.version,
        vectors: vectors_to_grpc(point.vector),
        ..grpc::ScoredPoint::default()
    }
}

pub(crate) fn record_to_grpc(record: edge::Record) -> grpc::RetrievedPoint {
    grpc::RetrievedPoint {
        id: Some(point_id_to_grpc(record.id)),
        payload: payload_to_grpc(record.payload),
        vectors: vectors_to_grpc(record.vector),
        ..grpc::RetrievedPoint::default()
    }
}

pub(crate) fn distance_from_grpc(distance: i32) -> EdgeResult<edge::Distance> {
    match grpc::Distance::try_from(distance) {
        Ok(grpc::Distance::Cosine) => Ok(edge::Distance::Cosine),
        Ok(grpc::Distance::Dot) => Ok(edge::Distance::Dot),
        Ok(grpc::Distance::Euclid) => Ok(edge::Distance::Euclid),
        Ok(grpc::Distance::Manhattan) => Ok(edge::Distance::Manhattan),
        Ok(grpc::Distance::UnknownDistance) | Err(_) => {
            Err(EdgeError::bad_input(format!("unknown distance {distance}")))
        }
    }
}

pub(crate) fn distance_to_grpc(distance: edge::Distance) -> grpc::Distance {
    match distance {
        edge::Distance::Cosine => grpc::Distance::Cosine,
        edge::Distance::Dot => grpc::Distance::Dot,
        edge::Distance::Euclid => grpc::Distance::Euclid,
        edge::Distance::Manhattan => grpc::Distance::Manhattan,
    }
}

pub(crate) fn field_type_from_grpc(
    field_type: Option<i32>,
    params: Option<&grpc::PayloadIndexParams>,
) -> EdgeResult<edge::PayloadSchemaType> {
    use grpc::payload_index_params::IndexParams;

    if let Some(field_type) = field_type {
        return match grpc::FieldType::try_from(field_type) {
            Ok(grpc::FieldType::Keyword) => Ok(edge::PayloadSchemaType::Keyword),
            Ok(grpc::FieldType::Integer) => Ok(edge::PayloadSchemaType::Integer),
            Ok(grpc::FieldType::Float) => Ok(edge::PayloadSchemaType::Float),
            Ok(grpc::FieldType::Geo) => Ok(edge::PayloadSchemaType::Geo),
            Ok(grpc::FieldType::Text) => Ok(edge::PayloadSchemaType::Text),
            Ok(grpc::FieldType::Bool) => Ok(edge::PayloadSchemaType::Bool),
            Ok(grpc::FieldType::Datetime) => Ok(edge::PayloadSchemaType::Datetime),
            Ok(grpc::FieldType::Uuid) => Ok(edge::PayloadSchemaType::Uuid),
            Err(_) => Err(EdgeError::bad_input(format!("unknown field type {field_type}"))),
        };
    }
    match params.and_then(|params| params.index_params.as_ref()) {
        Some(IndexParams::KeywordIndexParams(_)) => Ok(edge::PayloadSchemaType::Keyword),
        Some(IndexParams::IntegerIndexParams(_)) => Ok(edge::PayloadSchemaType::Integer),
        Some(IndexParams::FloatIndexParams(_)) => Ok(edge::PayloadSchemaType::Float),
        Some(IndexParams::GeoIndexParams(_)) => Ok(edge::PayloadSchemaType::Geo),
        Some(IndexParams::TextIndexParams(_)) => Ok(edge::PayloadSchemaType::Text),
        Some(IndexParams::BoolIndexParams(_)) => Ok(edge::PayloadSchemaType::Bool),
        Some(IndexParams::DatetimeIndexParams(_)) => Ok(edge::PayloadSchemaType::Datetime),
        Some(IndexParams::UuidIndexParams(_)) => Ok(edge::PayloadSchemaType::Uuid),
        None => Err(EdgeError::bad_input("a field index needs a field type or index params")),
    }
}

pub(crate) fn payload_schema_type_to_grpc(schema_type: edge::PayloadSchemaType) -> grpc::PayloadSchemaType {
    match schema_type {
        edge::PayloadSchemaType::Keyword => grpc::PayloadSchemaType::Keyword,
        edge::PayloadSchemaType::Integer => grpc::PayloadSchemaType::Integer,
        edge::PayloadSchemaType::Float => grpc::PayloadSchemaType::Float,
        edge::PayloadSchemaType::Geo => grpc::PayloadSchemaType::Geo,
        edge::PayloadSchemaType::Text => grpc::PayloadSchemaType::Text,
        edge::PayloadSchemaType::Bool => grpc::PayloadSchemaType::Bool,
        edge::PayloadSchemaType::Datetime => grpc::PayloadSchemaType::Datetime,
        edge::PayloadSchemaType::Uuid => grpc::PayloadSchemaType::Uuid,
    }
}

pub(crate) fn key_from_grpc(key: &str) -> EdgeResult<edge::JsonPath> {
    key.parse().map_err(|()| EdgeError::bad_input(format!("invalid payload key `{key}`")))
}

fn keys_from_grpc(keys: &[String]) -> EdgeResult<Vec<edge::JsonPath>> {
    keys.iter().map(|key| key_from_grpc(key)).collect()
}

pub(crate) fn optional_filter_from_grpc(filter: Option<grpc::Filter>) -> EdgeResult<Option<edge::Filter>> {
    filter.map(filter_from_grpc).transpose()
}

pub(crate) fn filter_from_grpc(filter: grpc::Filter) -> EdgeResult<edge::Filter> {
    let grpc::Filter { should, must, must_not, min_should } = filter;
    Ok(edge::Filter {
        should: conditions_from_grpc(should)?,
        min_should: min_should
            .map(|min_should| -> EdgeResult<edge::MinShould> {
                Ok(edge::MinShould {
                    conditions: conditions_from_grpc(min_should.conditions)?.unwrap_or_default(),
                    min_count: usize::try_from(min_should.min_count).unwrap_or(usize::MAX),
                })
            })
            .transpose()?,
        must: conditions_from_grpc(must)?,
        must_not: conditions_from_grpc(must_not)?,
    })
}

/// An empty list is no constraint, as in Qdrant's own conversion.
fn conditions_from_grpc(conditions: Vec<grpc::Condition>) -> EdgeResult<Option<Vec<edge::Condition>>> {
    if conditions.is_empty() {
        return Ok(None);
    }
    conditions.into_iter().map(condition_from_grpc).collect::<EdgeResult<Vec<_>>>().map(Some)
}

fn condition_from_grpc(condition: grpc::Condition) -> EdgeResult<edge::Condition> {
    let Some(condition) = condition.condition_one_of else {
        return Err(EdgeError::bad_input("a filter condition is empty"));
    };
    Ok(match condition {
        ConditionOneOf::Field(field) => edge::Condition::Field(field_condition_from_grpc(field)?),
        ConditionOneOf::IsEmpty(is_empty) => {
            edge::Condition::IsEmpty(edge::IsEmptyCondition::from(key_from_grpc(&is_empty.key)?))
        }
        ConditionOneOf::IsNull(is_null) => {
            edge::Condition::IsNull(edge::IsNullCondition::from(key_from_grpc(&is_null.key)?))
        }
        ConditionOneOf::HasId(has_id) => {
            edge::Condition::HasId(point_ids_from_grpc(&has_id.has_id)?.into_iter().collect::<edge::HasIdCondition>())
        }
        ConditionOneOf::HasVector(has_vector) => {
            edge::Condition::HasVector(edge::HasVectorCondition { has_vector: has_vector.has_vector })
        }
        ConditionOneOf::Filter(filter) => edge::Condition::Filter(filter_from_grpc(filter)?),
        ConditionOneOf::Nested(nested) => edge::Condition::Nested(edge::NestedCondition::new(edge::Nested {
            key: key_from_grpc(&nested.key)?,
            filter: filter_from_grpc(nested.filter.unwrap_or_default())?,
        })),
        ConditionOneOf::Slice(_) => {
            return Err(EdgeError::bad_input("the slice condition is not supported by the qdrant-edge test server"));
        }
    })
}

fn field_condition_from_grpc(field: grpc::FieldCondition) -> EdgeResult<edge::FieldCondition> {
    let grpc::FieldCondition {
        key,
        r#match,
        range,
        geo_bounding_box,
        geo_radius,
        values_count,
        geo_polygon,
        datetime_range,
        is_empty,
        is_null,
    } = field;
    if geo_bounding_box.is_some() || geo_radius.is_some() || geo_polygon.is_some() {
        return Err(EdgeError::bad_input("geo conditions are not supported by the qdrant-edge test server"));
    }
    if datetime_range.is_some() {
        return Err(EdgeError::bad_input("datetime_range is not supported by the qdrant-edge test server"));
    }
    let r#match = r#match
        .map(|r#match| match r#match.match_value {
            Some(match_value) => match_from_grpc(match_value),
            None => Err(EdgeError::bad_input(format!("the match condition on `{key}` is empty"))),
        })
        .transpose()?;
    let range = range.map(|range| {
        edge::RangeInterface::Float(edge::Range {
            lt: range.lt.map(OrderedFloat),
            gt: range.gt.map(OrderedFloat),
            gte: range.gte.map(OrderedFloat),
            lte: range.lte.map(OrderedFloat),
        })
    });
    let to_usize = |count: Option<u64>| count.map(|count| usize::try_from(count).unwrap_or(usize::MAX));
    let values_count = values_count.map(|count| edge::ValuesCount {
        lt: to_usize(count.lt),
        gt: to_usize(count.gt),
        gte: to_usize(count.gte),
        lte: to_usize(count.lte),
    });
    if r#match.is_none() && range.is_none() && values_count.is_none() && is_empty.is_none() && is_null.is_none() {
        return Err(EdgeError::bad_input(format!("the field condition on `{key}` has no condition")));
    }
    Ok(edge::FieldCondition {
        key: key_from_grpc(&key)?,
        r#match,
        range,
        geo_bounding_box: None,
        geo_radius: None,
        geo_polygon: None,
        values_count,
        is_empty,
        is_null,
    })
}

fn match_from_grpc(match_value: GrpcMatch) -> EdgeResult<edge::Match> {
    Ok(match match_value {
        GrpcMatch::Keyword(keyword) => edge::Match::new_value(edge::ValueVariants::String(keyword)),
        GrpcMatch::Integer(integer) => edge::Match::new_value(edge::ValueVariants::Integer(integer)),
        GrpcMatch::Boolean(flag) => edge::Match::new_value(edge::ValueVariants::Bool(flag)),
        GrpcMatch::Text(text) => edge::Match::Text(edge::MatchText { text }),
        GrpcMatch::TextAny(text_any) => edge::Match::TextAny(edge::MatchTextAny { text_any }),
        GrpcMatch::Phrase(phrase) => edge::Match::Phrase(edge::MatchPhrase { phrase }),
        GrpcMatch::Keywords(keywords) => {
            edge::Match::Any(edge::MatchAny { any: edge::AnyVariants::Strings(keywords.strings.into_iter().collect()) })
        }
        GrpcMatch::Integers(integers) => edge::Match::Any(edge::MatchAny {
            any: edge::AnyVariants::Integers(integers.integers.into_iter().collect()),
        }),
        GrpcMatch::ExceptKeywords(keywords) => edge::Match::Except(edge::MatchExcept {
            except: edge::AnyVariants::Strings(keywords.strings.into_iter().collect()),
        }),
        GrpcMatch::ExceptIntegers(integers) => edge::Match::Except(edge::MatchExcept {
            except: edge::AnyVariants::Integers(integers.integers.into_iter().collect()),
        }),
        GrpcMatch::Prefix(_) | GrpcMatch::Substring(_) => {
            return Err(EdgeError::bad_input("prefix and substring matches are not supported by qdrant-edge 0.7.2"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyword_condition(key: &str, keyword: &str) -> grpc::Condition {
        grpc::Condition::matches(key, keyword.to_owned())
    }

    #[test]
    fn an_empty_condition_is_bad_input_not_a_panic() {
        let filter = grpc::Filter { must: vec![grpc::Condition { condition_one_of: None }], ..grpc::Filter::default() };
        assert!(matches!(filter_from_grpc(filter), Err(EdgeError::BadInput(_))));
    }

    #[test]
    fn empty_clauses_become_no_constraint() {
        let filter = filter_from_grpc(grpc::Filter::must([keyword_condition("org", "a")])).unwrap();
        assert!(filter.should.is_none());
        assert!(filter.must_not.is_none());
        assert_eq!(filter.must.map(|must| must.len()), Some(1));
    }

    #[test]
    fn payload_values_round_trip() {
        let json = serde_json::json!({
            "s": "x", "i": -3, "d": 1.5, "b": true, "n": null,
            "l": [1, "two"], "o": {"inner": [false]}
        });
        let JsonValue::Object(map) = json.clone() else { unreachable!() };
        let grpc_payload = payload_to_grpc(Some(edge::Payload(map)));
        let back = payload_from_grpc(grpc_payload);
        assert_eq!(JsonValue::Object(back.0), json);
    }

    #[test]
    fn a_bad_uuid_is_bad_input() {
        let point_id = grpc::PointId { point_id_options: Some(PointIdOptions::Uuid("not-a-uuid".to_owned())) };
        assert!(matches!(point_id_from_grpc(&point_id), Err(EdgeError::BadInput(_))));
    }
}
