package org.tensorflow.lite;

/** Stand-in for LiteRT's {@code DataType}: the element types of a tensor. */
public enum DataType {
    FLOAT32,
    INT32,
    UINT8,
    INT64,
    STRING,
    BOOL,
    INT16,
    INT8
}
