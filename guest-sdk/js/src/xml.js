// A small, non-validating XML scanner: enough to read VOEvents without a
// dependency. It checks what a well-formed document needs (tags nest,
// attributes are quoted, entities are known) and reports the offset of what
// is wrong; the caller turns offsets into line numbers.

const PREDEFINED = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const NAME = /[^\s/>=<"']+/y;
const SPACE = /\s*/y;
// One match per well-formed token: regular expressions run as native code
// inside a component while JavaScript is interpreted, so the fewer steps in
// JavaScript, the faster the scan. Groups: 1 text, 2-4 start tag (name,
// attributes, `/`), 5 end tag, 6 CDATA; comments and processing
// instructions match with no group. What this does not match (a doctype, or
// a mistake) goes through the step-by-step code, which says what is wrong.
const TOKEN =
  /([^<]+)|<([^\s/>=<"'!?]+)((?:\s+[^\s/>=<"']+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>|<\/([^\s/>=<"']+)\s*>|<!\[CDATA\[([\s\S]*?)\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>/y;
const ATTRIBUTE = /([^\s/>=<"']+)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g;
const ATTRIBUTE_SPACE = /[\t\n\r]/g;

/** A malformed document: `at` is the offset where the problem was found. */
export class XmlError extends Error {
  constructor(message, at) {
    super(message);
    this.at = at;
  }
}

/** Whether XML 1.0 allows the code point `code` in a document (its `Char`
 * production). */
export function isXmlChar(code) {
  return (
    code === 0x09 ||
    code === 0x0a ||
    code === 0x0d ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

/** A character XML does not allow (`text` is well-formed UTF-16). */
export const NOT_XML_CHAR = /[^\t\n\r\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

/** Replace character and predefined entity references in `text`. */
export function decodeEntities(text, at = 0) {
  if (!text.includes('&')) return text;
  return text.replace(/&([^;&<]*);?/g, (whole, ref, offset) => {
    if (!whole.endsWith(';')) throw new XmlError(`entity \`&${ref}\` is not terminated by \`;\``, at + offset);
    if (ref.startsWith('#')) {
      const hex = ref[1] === 'x';
      const digits = ref.slice(hex ? 2 : 1);
      const valid = hex ? /^[0-9a-fA-F]+$/.test(digits) : /^[0-9]+$/.test(digits);
      const code = valid ? parseInt(digits, hex ? 16 : 10) : NaN;
      if (!isXmlChar(code)) {
        throw new XmlError(`bad character reference \`&${ref};\``, at + offset);
      }
      return String.fromCodePoint(code);
    }
    if (Object.hasOwn(PREDEFINED, ref)) return PREDEFINED[ref];
    throw new XmlError(`unknown entity \`&${ref};\``, at + offset);
  });
}

/**
 * Scan `text` into events, calling `onStart(name, attrs, at)`,
 * `onEnd(name, at)` and `onText(text, at)`. Names keep their prefixes.
 * Comments, processing instructions and the doctype are skipped; CDATA is
 * text. An empty element gives a start and an end.
 */
export function scan(text, { onStart, onEnd, onText }) {
  let i = 0;
  const n = text.length;
  const expect = (closing, what, from) => {
    const end = text.indexOf(closing, i);
    if (end < 0) throw new XmlError(`${what} not closed`, from);
    return end;
  };
  while (i < n) {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(text);
    const attrs = m && m[2] !== undefined ? (m[3] ? attributes(m[3], i) : {}) : null;
    if (m && (m[2] === undefined || attrs !== null)) {
      if (m[1] !== undefined) onText(decodeEntities(m[1], i), i);
      else if (m[2] !== undefined) {
        onStart(m[2], attrs, i);
        if (m[4]) onEnd(m[2], i);
      } else if (m[5] !== undefined) onEnd(m[5], i);
      else if (m[6] !== undefined) onText(m[6], i);
      i = TOKEN.lastIndex;
      continue;
    }
    const lt = text.indexOf('<', i);
    const end = lt < 0 ? n : lt;
    if (end > i) onText(decodeEntities(text.slice(i, end), i), i);
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<!--', i)) {
      i = expect('-->', 'comment', i) + 3;
    } else if (text.startsWith('<![CDATA[', i)) {
      const end = expect(']]>', 'CDATA section', i);
      onText(text.slice(i + 9, end), i);
      i = end + 3;
    } else if (text.startsWith('<?', i)) {
      i = expect('?>', 'processing instruction', i) + 2;
    } else if (text.startsWith('<!', i)) {
      // A doctype. One with an internal subset (`[...]`) could declare
      // entities, which the other SDKs do not expand: refuse it alike.
      const end = expect('>', 'doctype', i);
      if (text.slice(i, end).includes('[')) throw new XmlError('a doctype with an internal subset is not supported', i);
      i = end + 1;
    } else if (text.startsWith('</', i)) {
      const start = i;

      NAME.lastIndex = i + 2;
      const m = NAME.exec(text);
      if (!m) throw new XmlError('end tag without a name', start);
      SPACE.lastIndex = NAME.lastIndex;
      SPACE.exec(text);
      if (text[SPACE.lastIndex] !== '>') throw new XmlError(`end tag </${m[0]}> not closed`, start);
      i = SPACE.lastIndex + 1;
      onEnd(m[0], start);
    } else {
      const start = i;
      NAME.lastIndex = i + 1;
      const m = NAME.exec(text);
      if (!m) throw new XmlError('tag without a name', start);
      const name = m[0];
      const attrs = {};
      let j = NAME.lastIndex;
      for (;;) {
        SPACE.lastIndex = j;
        SPACE.exec(text);
        const spaced = SPACE.lastIndex > j;
        j = SPACE.lastIndex;
        if (j >= n) throw new XmlError(`tag <${name}> not closed`, start);
        if (text[j] === '>' || text.startsWith('/>', j)) break;
        if (!spaced) throw new XmlError(`attributes of <${name}> must be separated by spaces`, j);
        NAME.lastIndex = j;
        const key = NAME.exec(text);
        if (!key) throw new XmlError(`bad attribute in <${name}>`, j);
        SPACE.lastIndex = NAME.lastIndex;
        SPACE.exec(text);
        if (text[SPACE.lastIndex] !== '=') throw new XmlError(`attribute \`${key[0]}\` of <${name}> has no value`, j);
        SPACE.lastIndex += 1;
        SPACE.exec(text);
        const quote = text[SPACE.lastIndex];
        if (quote !== '"' && quote !== "'") throw new XmlError(`attribute \`${key[0]}\` of <${name}> is not quoted`, j);
        const valueStart = SPACE.lastIndex + 1;
        const valueEnd = text.indexOf(quote, valueStart);
        if (valueEnd < 0) throw new XmlError(`tag <${name}> not closed`, start);
        const raw = text.slice(valueStart, valueEnd);
        if (raw.includes('<')) throw new XmlError(`\`<\` in the value of attribute \`${key[0]}\``, valueStart);
        if (Object.hasOwn(attrs, key[0])) throw new XmlError(`attribute \`${key[0]}\` given twice in <${name}>`, j);
        // Attribute-value normalization: each whitespace character is a space.
        attrs[key[0]] = decodeEntities(raw.replace(/[\t\n\r]/g, ' '), valueStart);
        j = valueEnd + 1;
      }
      const empty = text.startsWith('/>', j);
      i = j + (empty ? 2 : 1);
      onStart(name, attrs, start);
      if (empty) onEnd(name, start);
    }
  }
}

/** The attributes in `raw` (what follows a tag's name), values decoded and
 * normalized; `null` when a name repeats. */
function attributes(raw, at) {
  const attrs = {};
  ATTRIBUTE.lastIndex = 0;
  for (let m = ATTRIBUTE.exec(raw); m; m = ATTRIBUTE.exec(raw)) {
    if (Object.hasOwn(attrs, m[1])) return null;
    let value = m[2] ?? m[3];
    if (ATTRIBUTE_SPACE.test(value)) value = value.replace(ATTRIBUTE_SPACE, ' ');
    ATTRIBUTE_SPACE.lastIndex = 0;
    attrs[m[1]] = decodeEntities(value, at + m.index);
  }
  return attrs;
}

/** The local name of a prefixed name: `voe:VOEvent` → `VOEvent`. */
export function localName(name) {
  const colon = name.lastIndexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

/** The 1-based line of offset `at` in `text`. */
export function lineOf(text, at) {
  let line = 1;
  const end = Math.min(at, text.length);
  for (let k = text.indexOf('\n'); k >= 0 && k < end; k = text.indexOf('\n', k + 1)) line++;
  return line;
}
