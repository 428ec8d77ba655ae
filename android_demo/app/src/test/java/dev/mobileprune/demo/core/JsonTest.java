package dev.mobileprune.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesNestedObjectsArraysAndScalarsInOrder() {
        Map<String, Object> root = Json.parseObject(
                " {\"b\": [1, -2.5e-3, 0.0039215689], \"a\": {\"x\": true, \"y\": null},"
                        + " \"s\": \"hi\", \"f\": false, \"e\": [], \"o\": {}}\n");
        assertEquals(Arrays.asList("b", "a", "s", "f", "e", "o"), Arrays.asList(root.keySet().toArray()));
        List<?> numbers = (List<?>) root.get("b");
        assertEquals(1.0, (Double) numbers.get(0), 0.0);
        assertEquals(-0.0025, (Double) numbers.get(1), 0.0);
        assertEquals(0.0039215689, (Double) numbers.get(2), 0.0);
        Map<?, ?> inner = (Map<?, ?>) root.get("a");
        assertEquals(Boolean.TRUE, inner.get("x"));
        assertTrue(inner.containsKey("y"));
        assertNull(inner.get("y"));
        assertEquals("hi", root.get("s"));
        assertEquals(Boolean.FALSE, root.get("f"));
        assertTrue(((List<?>) root.get("e")).isEmpty());
        assertTrue(((Map<?, ?>) root.get("o")).isEmpty());
    }

    @Test
    public void decodesEveryEscapeIncludingSurrogatePairs() {
        Object value = Json.parse("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\ud83d\\ude00\"");
        assertEquals("q\" b\\ s/ \b\f\n\r\t \u00e9 \ud83d\ude00", value);
    }

    @Test
    public void keepsFloat32ScalesExactThroughDouble() {
        // Python writes float32 scales as the shortest double repr; (float) must give them back.
        float scale = 1f / 255f;
        double written = Double.parseDouble(Double.toString((double) scale));
        assertEquals(scale, (float) (double) (Double) Json.parse(Double.toString(written)), 0f);
    }

    @Test
    public void rejectsMalformedDocumentsWithTheOffset() {
        String[] bad = {"", "{", "{\"a\" 1}", "{\"a\": 1,}", "[1 2]", "{\"a\": 01}", "-", "1.",
                "1e", "tru", "\"abc", "\"\\x\"", "\"\\u12\"", "{\"a\": 1} x", "{a: 1}",
                "{\"a\": 1, \"a\": 2}", "\"tab\there\""};
        for (String text : bad) {
            try {
                Json.parse(text);
                fail("accepted malformed JSON: " + text);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().startsWith("JSON: "));
                assertTrue(expected.getMessage(), expected.getMessage().contains("at offset"));
            }
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void parseObjectRejectsTopLevelArrays() {
        Json.parseObject("[1]");
    }
}
