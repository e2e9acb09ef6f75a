// The widget's own text of groups, for tests/delivery/test_summary.py: reads a JSON list of
// groups on stdin, writes the English text `describe` gives each one (a JSON list).
// `describe` builds DOM nodes; a few lines of fake document stand in for a browser's.

class FakeNode {
  constructor() {
    this.parts = [];
  }
  append(...items) {
    this.parts.push(...items);
  }
  setAttribute() {}
  set textContent(text) {
    this.parts = [String(text)];
  }
  get textContent() {
    return this.parts.map((p) => (typeof p === "string" ? p : p.textContent)).join("");
  }
}

globalThis.document = {
  createElement: () => new FakeNode(),
  createDocumentFragment: () => new FakeNode(),
};

const here = new URL("../../static/", import.meta.url);
const { describe } = await import(new URL("notifier-items.js", here));
const { stringsFor } = await import(new URL("notifier-i18n.js", here));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const strings = stringsFor("en");
const texts = JSON.parse(input).map((group) => describe(group, strings, "en").textContent);
process.stdout.write(JSON.stringify(texts));
