//! `weir export --format parquet`: the exported rows as one Parquet file,
//! for pandas (`pd.read_parquet`) and Arrow. One row per invocation; an
//! edge whose cells all hold one element is a plain column (DOUBLE, or
//! STRING for text), any other a LIST of them; a sensitive or unkept edge
//! is null.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::Value;

/// How one edge is written.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Number,
    Text,
    Numbers,
    Texts,
}

/// One exported row: its identity, and a cell per chosen edge (`None`: null).
pub struct Row {
    pub invocation_id: String,
    pub unix_ms: i64,
    pub pipeline: String,
    pub variant: Option<String>,
    pub cells: Vec<Option<Vec<Value>>>,
}

impl Row {
    /// From a row of `weir_observe::export::row`.
    pub fn of(row: &Value, columns: &[String]) -> Row {
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
        Row {
            invocation_id: text("invocation_id").unwrap_or_default(),
            unix_ms: row.get("unix_ms").and_then(Value::as_i64).unwrap_or(0),
            pipeline: text("pipeline").unwrap_or_default(),
            variant: text("variant"),
            cells: columns.iter().map(|c| row.get(c).and_then(Value::as_array).cloned()).collect(),
        }
    }
}

fn shape_of(rows: &[Row], column: usize) -> Shape {
    let cells = || rows.iter().filter_map(|r| r.cells[column].as_ref());
    let text = cells().flatten().any(Value::is_string);
    let single = cells().all(|c| c.len() == 1);
    match (text, single) {
        (false, true) => Shape::Number,
        (true, true) => Shape::Text,
        (false, false) => Shape::Numbers,
        (true, false) => Shape::Texts,
    }
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Bool(b) => f64::from(u8::from(*b)),
        // JSON has no NaN: a non-finite number was recorded as null.
        other => other.as_f64().unwrap_or(f64::NAN),
    }
}

fn text(value: &Value) -> ByteArray {
    match value {
        Value::String(s) => ByteArray::from(s.as_str()),
        other => ByteArray::from(other.to_string().as_str()),
    }
}

fn column_type(name: &str, shape: Shape) -> parquet::errors::Result<Type> {
    let leaf = |name: &str, repetition| match shape {
        Shape::Number | Shape::Numbers => {
            Type::primitive_type_builder(name, Physical::DOUBLE).with_repetition(repetition).build()
        }
        Shape::Text | Shape::Texts => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String))
            .with_repetition(repetition)
            .build(),
    };
    match shape {
        Shape::Number | Shape::Text => leaf(name, Repetition::OPTIONAL),
        Shape::Numbers | Shape::Texts => {
            let list = Type::group_type_builder("list")
                .with_repetition(Repetition::REPEATED)
                .with_fields(vec![Arc::new(leaf("element", Repetition::REQUIRED)?)])
                .build()?;
            Type::group_type_builder(name)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(Some(LogicalType::List))
                .with_fields(vec![Arc::new(list)])
                .build()
        }
    }
}

/// Definition and repetition levels of a cell, and its values.
fn levels<'a>(cells: impl Iterator<Item = &'a Option<Vec<Value>>>, list: bool) -> (Vec<i16>, Vec<i16>, Vec<&'a Value>) {
    let (mut defs, mut reps, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for cell in cells {
        match cell {
            None => {
                defs.push(0);
                reps.push(0);
            }
            Some(items) if list && items.is_empty() => {
                defs.push(1);
                reps.push(0);
            }
            Some(items) if list => {
                for (i, item) in items.iter().enumerate() {
                    defs.push(2);
                    reps.push(i16::from(i > 0));
                    values.push(item);
                }
            }
            Some(items) => {
                defs.push(1);
                reps.push(0);
                values.extend(items.first());
            }
        }
    }
    (defs, reps, values)
}

/// Write `rows` with a column per name in `columns` to `path`.
pub fn write(path: &Path, columns: &[String], rows: &[Row]) -> anyhow::Result<()> {
    let shapes: Vec<Shape> = (0..columns.len()).map(|c| shape_of(rows, c)).collect();
    fn required(name: &str, physical: Physical) -> parquet::schema::types::PrimitiveTypeBuilder<'_> {
        Type::primitive_type_builder(name, physical).with_repetition(Repetition::REQUIRED)
    }
    let mut fields = vec![
        Arc::new(required("invocation_id", Physical::BYTE_ARRAY).with_logical_type(Some(LogicalType::String)).build()?),
        Arc::new(required("unix_ms", Physical::INT64).build()?),
        Arc::new(required("pipeline", Physical::BYTE_ARRAY).with_logical_type(Some(LogicalType::String)).build()?),
        Arc::new(
            Type::primitive_type_builder("variant", Physical::BYTE_ARRAY)
                .with_logical_type(Some(LogicalType::String))
                .with_repetition(Repetition::OPTIONAL)
                .build()?,
        ),
    ];
    for (name, shape) in columns.iter().zip(&shapes) {
        fields.push(Arc::new(column_type(name, *shape)?));
    }
    let schema = Arc::new(Type::group_type_builder("weir_export").with_fields(fields).build()?);
    let file = std::fs::File::create(path)?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))?;
    let mut group = writer.next_row_group()?;
    let mut index = 0usize;
    while let Some(mut column) = group.next_column()? {
        match index {
            0 | 2 => {
                let values: Vec<ByteArray> = rows
                    .iter()
                    .map(|r| ByteArray::from(if index == 0 { r.invocation_id.as_str() } else { r.pipeline.as_str() }))
                    .collect();
                column.typed::<ByteArrayType>().write_batch(&values, None, None)?;
            }
            1 => {
                let values: Vec<i64> = rows.iter().map(|r| r.unix_ms).collect();
                column.typed::<Int64Type>().write_batch(&values, None, None)?;
            }
            3 => {
                let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.variant.is_some())).collect();
                let values: Vec<ByteArray> =
                    rows.iter().filter_map(|r| r.variant.as_deref()).map(ByteArray::from).collect();
                column.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None)?;
            }
            i => {
                let c = i - 4;
                let list = matches!(shapes[c], Shape::Numbers | Shape::Texts);
                let (defs, reps, values) = levels(rows.iter().map(|r| &r.cells[c]), list);
                let reps = list.then_some(reps.as_slice());
                match shapes[c] {
                    Shape::Number | Shape::Numbers => {
                        let values: Vec<f64> = values.into_iter().map(number).collect();
                        column.typed::<DoubleType>().write_batch(&values, Some(&defs), reps)?;
                    }
                    Shape::Text | Shape::Texts => {
                        let values: Vec<ByteArray> = values.into_iter().map(text).collect();
                        column.typed::<ByteArrayType>().write_batch(&values, Some(&defs), reps)?;
                    }
                }
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
