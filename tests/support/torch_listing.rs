//! A model's tensors as the zoo fixtures write a `state_dict()`: name,
//! shape and torch's dtype name (`float32`), for tests/zoo.rs and
//! tests/zoo_fresh.rs.

use ckptcheck::arch::ModelSpec;

/// torch's dtype name for ckptcheck's (the fixtures speak torch).
pub fn torch_name(dtype: &str) -> String {
    [
        "float32",
        "float64",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "complex64",
    ]
    .into_iter()
    .find(|name| ckptcheck::format::pytorch::torch_dtype(name) == Some(dtype))
    .map_or_else(|| dtype.to_string(), str::to_string)
}

/// `(name, shape, torch dtype)` of every tensor, in the model's order.
pub fn listing(model: &ModelSpec) -> Vec<(String, Vec<u64>, String)> {
    model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), torch_name(&t.dtype)))
        .collect()
}
