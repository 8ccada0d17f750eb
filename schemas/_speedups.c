/* schemas._speedups: C versions of three checks run on every consumed event.
 *
 * Each answers only what it can prove; the Python code it stands in front of
 * (bus/consume/_jsoncheck.py, schemas/_registry.py, schemas/_checks.py) stays the authority for
 * everything else and reports every error, so a verdict can only be reached faster, never
 * differently.
 *
 * - plain_json(data: bytes) -> bool
 *   True when data is one JSON value (RFC 8259) that the plain-JSON check certainly accepts:
 *   well-formed, strictly valid UTF-8, no duplicate key in any object, nesting of at most
 *   MAX_DEPTH levels, numbers of a size no decoder refuses. False for anything it does not
 *   prove: a key spelt with an escape, a \u escape of a surrogate, a long or exponent-heavy
 *   number, an object of more than MAX_OBJECT_KEYS keys, deeper nesting, and all invalid input.
 *
 * - lacks_key(data: bytes, quoted: tuple[bytes, ...]) -> bool
 *   True when data holds no backslash (so no key is spelt with an escape) and one of the quoted
 *   keys (b'"name"') occurs nowhere in it: an object that requires that key cannot match. The
 *   registry skips such union shapes; bytes.find does the same search several times slower.
 *
 * - ids_ok(uuids: list[str], datetimes: list[str] | str) -> bool
 *   True when every uuid matches UUID_PATTERN and every datetime STRICT_DATETIME_PATTERN
 *   (schemas/_types.py): exactly the patterns, ASCII digits only. False otherwise.
 *
 * tests/test_schemas/test_speedups.py compares each with its Python counterpart over edge and
 * generated inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEYS 512     /* keys held for the objects open at one time */
#define MAX_OBJECT_KEYS 128

typedef struct {
    const unsigned char *start;
    Py_ssize_t len;
} key_t_;

/* 1 for a byte that may appear in a string as is without a closer look: ASCII from 0x20 (DEL
 * included: JSON allows it unescaped) other than '"' and '\\'. */
static unsigned char plain_char[256];

static int
is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One strictly valid UTF-8 sequence starting at *p (a byte >= 0x80); advances *p. */
static int
utf8_seq(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    unsigned char c = *p;
    Py_ssize_t left = end - p;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80) return 0;
        *pp = p + 2;
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
        if (left < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80) return 0;
        *pp = p + 3;
        return 1;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* at most U+10FFFF */
        if (left < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        *pp = p + 4;
        return 1;
    }
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether one of the 8 bytes of w needs a closer look: '"', '\\', a control character or a byte
 * >= 0x80. Each (x - ONES * n) & ~x & HIGHS is non-zero exactly when some byte of x is below n
 * (n <= 0x80), so a 0 here proves all 8 bytes plain; strings are mostly such runs. */
static inline int
needs_look(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"');
    uint64_t backslash = w ^ (ONES * '\\');
    return (((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w) | w) & HIGHS
           ? 1
           : 0;
}

/* The string whose opening quote is at p[-1]; returns the byte after the closing quote, or NULL.
 * A key (is_key) may not hold an escape: its bytes are then its text, compared as they are. */
static const unsigned char *
scan_string(const unsigned char *p, const unsigned char *end, int is_key)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (needs_look(w)) break;
            p += 8;
        }
        while (p < end && plain_char[*p]) p++;
        if (p >= end) return NULL;
        unsigned char c = *p;
        if (c == '"') return p + 1;
        if (c == '\\') {
            if (is_key || end - p < 2) return NULL;
            c = p[1];
            if (c == 'u') {
                if (end - p < 6) return NULL;
                int h0 = hexval(p[2]), h1 = hexval(p[3]), h2 = hexval(p[4]), h3 = hexval(p[5]);
                if ((h0 | h1 | h2 | h3) < 0) return NULL;
                int v = (h0 << 12) | (h1 << 8) | (h2 << 4) | h3;
                if (v >= 0xD800 && v <= 0xDFFF) return NULL; /* surrogates: left to the Python check */
                p += 6;
            }
            else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
                p += 2;
            }
            else {
                return NULL;
            }
            continue;
        }
        if (c < 0x20) return NULL; /* a raw control character */
        if (!utf8_seq(&p, end)) return NULL;
    }
}

/* A number starting at p; returns the byte after it, or NULL. Only sizes no decoder refuses:
 * an integer of at most 18 digits, or at most 40 significant digits with an exponent of at most
 * two digits (well inside a double's range, and far from its underflow). */
static const unsigned char *
scan_number(const unsigned char *p, const unsigned char *end)
{
    Py_ssize_t digits = 0;
    int is_float = 0;
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
        digits = 1;
    }
    else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        is_float = 1;
        const unsigned char *f = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == f) return NULL;
        digits += p - f;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        is_float = 1;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const unsigned char *e = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == e || p - e > 2) return NULL;
    }
    if (is_float ? digits > 40 : digits > 18) return NULL;
    return p;
}

static int
scan_plain(const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *end = p + n;
    /* Per open container: 0 for an array, else 1 + the index of its first key in keys. */
    Py_ssize_t stack[MAX_DEPTH];
    int depth = 0;
    key_t_ keys[MAX_KEYS];
    Py_ssize_t nkeys = 0;

    goto value;

value:
    while (p < end && is_ws(*p)) p++;
    if (p >= end) return 0;
    switch (*p) {
    case '{':
        if (depth == MAX_DEPTH) return 0;
        stack[depth++] = 1 + nkeys;
        p++;
        while (p < end && is_ws(*p)) p++;
        if (p < end && *p == '}') {
            p++;
            depth--;
            goto after;
        }
        goto key;
    case '[':
        if (depth == MAX_DEPTH) return 0;
        stack[depth++] = 0;
        p++;
        while (p < end && is_ws(*p)) p++;
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto after;
        }
        goto value;
    case '"':
        p = scan_string(p + 1, end, 0);
        if (p == NULL) return 0;
        goto after;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0) return 0;
        p += 4;
        goto after;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0) return 0;
        p += 5;
        goto after;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0) return 0;
        p += 4;
        goto after;
    default:
        p = scan_number(p, end);
        if (p == NULL) return 0;
        goto after;
    }

key:
    /* p is at the first non-space byte where a key must start. */
    if (p >= end || *p != '"') return 0;
    {
        const unsigned char *start = p + 1;
        p = scan_string(start, end, 1);
        if (p == NULL) return 0;
        Py_ssize_t len = p - 1 - start;
        Py_ssize_t first = stack[depth - 1] - 1;
        if (nkeys - first >= MAX_OBJECT_KEYS || nkeys == MAX_KEYS) return 0;
        for (Py_ssize_t i = first; i < nkeys; i++) {
            if (keys[i].len == len && memcmp(keys[i].start, start, (size_t)len) == 0) return 0;
        }
        keys[nkeys].start = start;
        keys[nkeys].len = len;
        nkeys++;
    }
    while (p < end && is_ws(*p)) p++;
    if (p >= end || *p != ':') return 0;
    p++;
    goto value;

after:
    while (p < end && is_ws(*p)) p++;
    if (depth == 0) return p == end;
    if (p >= end) return 0;
    if (stack[depth - 1]) { /* an object */
        if (*p == ',') {
            p++;
            while (p < end && is_ws(*p)) p++;
            goto key;
        }
        if (*p == '}') {
            p++;
            nkeys = stack[--depth] - 1;
            goto after;
        }
        return 0;
    }
    if (*p == ',') {
        p++;
        goto value;
    }
    if (*p == ']') {
        p++;
        depth--;
        goto after;
    }
    return 0;
}

static PyObject *
plain_json(PyObject *Py_UNUSED(module), PyObject *arg)
{
    char *data;
    Py_ssize_t n;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "plain_json() takes bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    data = PyBytes_AS_STRING(arg);
    n = PyBytes_GET_SIZE(arg);
    if (scan_plain((const unsigned char *)data, n)) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* -- ids_ok ---------------------------------------------------------------------------------- */

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int
uuid_ok(PyObject *s)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s) || PyUnicode_GET_LENGTH(s) != 36) return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-') return 0;
        }
        else if (hexval(p[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/* ^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z\Z, ASCII \d */
static int
datetime_ok(PyObject *s)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    if (n < 20) return 0;
    if (!is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]) || !is_digit(p[3]) || p[4] != '-') return 0;
    /* month 01-12 */
    if (p[5] == '0') {
        if (p[6] < '1' || p[6] > '9') return 0;
    }
    else if (p[5] == '1') {
        if (p[6] < '0' || p[6] > '2') return 0;
    }
    else {
        return 0;
    }
    if (p[7] != '-') return 0;
    /* day 01-31 */
    if (p[8] == '0') {
        if (p[9] < '1' || p[9] > '9') return 0;
    }
    else if (p[8] == '1' || p[8] == '2') {
        if (!is_digit(p[9])) return 0;
    }
    else if (p[8] == '3') {
        if (p[9] != '0' && p[9] != '1') return 0;
    }
    else {
        return 0;
    }
    if (p[10] != 'T') return 0;
    /* hour 00-23 */
    if (p[11] == '0' || p[11] == '1') {
        if (!is_digit(p[12])) return 0;
    }
    else if (p[11] == '2') {
        if (p[12] < '0' || p[12] > '3') return 0;
    }
    else {
        return 0;
    }
    if (p[13] != ':' || p[14] < '0' || p[14] > '5' || !is_digit(p[15])) return 0;
    if (p[16] != ':' || p[17] < '0' || p[17] > '5' || !is_digit(p[18])) return 0;
    Py_ssize_t i = 19;
    if (p[i] == '.') {
        i++;
        Py_ssize_t f = i;
        while (i < n && is_digit(p[i])) i++;
        if (i == f) return 0;
    }
    return i == n - 1 && p[i] == 'Z';
}

static PyObject *
ids_ok(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "ids_ok(uuids: list[str], datetimes: list[str] | str)");
        return NULL;
    }
    PyObject *uuids = args[0], *datetimes = args[1];
    Py_ssize_t n = PyList_GET_SIZE(uuids);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!uuid_ok(PyList_GET_ITEM(uuids, i))) Py_RETURN_FALSE;
    }
    if (PyList_Check(datetimes)) {
        n = PyList_GET_SIZE(datetimes);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!datetime_ok(PyList_GET_ITEM(datetimes, i))) Py_RETURN_FALSE;
        }
    }
    else if (!datetime_ok(datetimes)) {
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* -- lacks_key -------------------------------------------------------------------------------- */

/* Whether needle (at least 2 bytes) occurs in data: memchr for its second byte (the first letter
 * of a quoted key; its first, a quote, is everywhere in JSON), then a compare. */
static int
contains(const char *data, Py_ssize_t n, const char *needle, Py_ssize_t m)
{
    if (m < 2 || m > n) return m <= n && (m == 0 || memchr(data, needle[0], (size_t)n) != NULL);
    const char *p = data + 1, *last = data + n - m + 1; /* needle[1] at p: needle starts at p - 1 */
    while (p <= last) {
        p = memchr(p, needle[1], (size_t)(last - p + 1));
        if (p == NULL) return 0;
        if (memcmp(p - 1, needle, (size_t)m) == 0) return 1;
        p++;
    }
    return 0;
}

static PyObject *
lacks_key(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "lacks_key(data: bytes, quoted: tuple[bytes, ...])");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (memchr(data, '\\', (size_t)n) != NULL) Py_RETURN_FALSE; /* a key may be spelt with an escape */
    Py_ssize_t count = PyTuple_GET_SIZE(args[1]);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *q = PyTuple_GET_ITEM(args[1], i);
        if (!PyBytes_Check(q)) {
            PyErr_SetString(PyExc_TypeError, "lacks_key: each quoted key must be bytes");
            return NULL;
        }
        if (!contains(data, n, PyBytes_AS_STRING(q), PyBytes_GET_SIZE(q))) Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"plain_json", (PyCFunction)plain_json, METH_O,
     "plain_json(data: bytes) -> bool: True when data is certainly plain JSON (see the module's header)."},
    {"lacks_key", (PyCFunction)(void (*)(void))lacks_key, METH_FASTCALL,
     "lacks_key(data, quoted) -> bool: True when data holds no backslash and misses one of the quoted keys."},
    {"ids_ok", (PyCFunction)(void (*)(void))ids_ok, METH_FASTCALL,
     "ids_ok(uuids, datetimes) -> bool: True when each uuid and datetime matches its pattern exactly."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "schemas._speedups",
    .m_doc = "C versions of the hottest consume-side checks.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (int c = 0x20; c < 0x80; c++) plain_char[c] = (c != '"' && c != '\\');
    return PyModuleDef_Init(&module_def);
}
