import ParleyDispatch
import ParleyJSON
import Testing

/// One row of the output-mapping table (docs/dispatch.md, spec §4).
struct MappingCase: Sendable, CustomTestStringConvertible {
    let name: String
    let response: JSONValue
    let expected: [JSONValue]
    var testDescription: String { name }
}

private let buttonA: JSONValue = ["title": "A", "payload": "/a"]
private let quickA: JSONValue = ["content_type": "text", "title": "A", "payload": "/a"]
private let element1: JSONValue = ["title": "T1", "subtitle": "S1", "buttons": [["title": "go", "payload": "/go"]]]
private let element2: JSONValue = ["title": "T2"]

let socketIOTable: [MappingCase] = [
    .init(name: "text", response: ["text": "hi"], expected: [["text": "hi"]]),
    .init(name: "paragraphs split on blank line", response: ["text": "a\n\nb"], expected: [["text": "a"], ["text": "b"]]),
    .init(name: "single newline kept", response: ["text": "l1\nl2"], expected: [["text": "l1\nl2"]]),
    .init(name: "outer whitespace stripped, inner kept", response: ["text": "  a  b \n"], expected: [["text": "a  b"]]),
    .init(name: "empty paragraphs skipped (Pro)", response: ["text": "a\n\n\n\nb"], expected: [["text": "a"], ["text": "b"]]),
    .init(name: "odd newline run", response: ["text": "a\n\n\nb"], expected: [["text": "a"], ["text": "\nb"]]),
    .init(name: "blank text sends nothing", response: ["text": "   "], expected: []),
    .init(name: "empty text sends nothing", response: ["text": ""], expected: []),
    .init(name: "null text sends nothing", response: ["text": nil], expected: []),
    .init(
        name: "buttons", response: ["text": "pick", "buttons": [buttonA, ["title": "B"]]],
        expected: [["text": "pick", "quick_replies": [quickA, ["content_type": "text", "title": "B", "payload": "B"]]]]),
    .init(
        name: "buttons on the last paragraph, extra button keys dropped",
        response: ["text": "p1\n\np2", "buttons": [["title": "A", "payload": "/a", "url": "http://x", "type": "postback"]]],
        expected: [["text": "p1", "quick_replies": []], ["text": "p2", "quick_replies": [quickA]]]),
    .init(name: "quick_replies like buttons", response: ["text": "q", "quick_replies": [buttonA]], expected: [["text": "q", "quick_replies": [quickA]]]),
    .init(
        name: "quick_replies win over buttons", response: ["text": "q", "quick_replies": [buttonA], "buttons": [["title": "B", "payload": "/b"]]],
        expected: [["text": "q", "quick_replies": [quickA]]]),
    .init(name: "buttons without text (Pro)", response: ["buttons": [buttonA]], expected: [["quick_replies": [quickA]]]),
    .init(name: "buttons with blank text (Pro)", response: ["text": " \n ", "buttons": [buttonA]], expected: [["quick_replies": [quickA]]]),
    .init(name: "empty buttons fall back to text", response: ["text": "t", "buttons": []], expected: [["text": "t"]]),
    .init(name: "image", response: ["image": "http://i/x.png"], expected: [["attachment": ["type": "image", "payload": ["src": "http://i/x.png"]]]]),
    .init(
        name: "attachment passed through", response: ["attachment": ["type": "video", "payload": ["src": "v"]]],
        expected: [["attachment": ["type": "video", "payload": ["src": "v"]]]]),
    .init(
        name: "elements: one message per element, single object", response: ["elements": [element1, element2]],
        expected: [
            ["attachment": ["type": "template", "payload": ["template_type": "generic", "elements": element1]]],
            ["attachment": ["type": "template", "payload": ["template_type": "generic", "elements": element2]]],
        ]),
    .init(name: "custom with data delivers data", response: ["custom": ["data": ["x": 1], "room": "r"]], expected: [["x": 1]]),
    .init(name: "custom without data delivers it whole (Pro)", response: ["custom": ["x": 1, "y": [1, 2]]], expected: [["x": 1, "y": [1, 2]]]),
    .init(name: "custom with null data", response: ["custom": ["data": nil]], expected: [nil]),
    .init(name: "empty custom skipped", response: ["custom": [:]], expected: []),
    .init(
        name: "precedence: text, custom, image, attachment, elements",
        response: ["elements": [element2], "attachment": ["type": "file"], "image": "u", "custom": ["k": 1], "text": "t"],
        expected: [
            ["text": "t"], ["k": 1], ["attachment": ["type": "image", "payload": ["src": "u"]]], ["attachment": ["type": "file"]],
            ["attachment": ["type": "template", "payload": ["template_type": "generic", "elements": element2]]],
        ]),
    .init(
        name: "buttons and custom", response: ["text": "t", "buttons": [buttonA], "custom": ["data": "d"]],
        expected: [["text": "t", "quick_replies": [quickA]], "d"]),
    .init(name: "falsy parts skipped", response: ["text": "t", "image": "", "attachment": nil, "elements": [], "custom": [:]], expected: [["text": "t"]]),
    .init(name: "metadata and unknown keys ignored", response: ["text": "t", "metadata": ["a": 1], "template_name": "utter_x"], expected: [["text": "t"]]),
    .init(name: "not an object", response: "hi", expected: []),
]

let restTable: [MappingCase] = [
    .init(name: "text", response: ["text": "hi"], expected: [["recipient_id": "u", "text": "hi"]]),
    .init(name: "paragraphs", response: ["text": "a\n\nb"], expected: [["recipient_id": "u", "text": "a"], ["recipient_id": "u", "text": "b"]]),
    .init(
        name: "buttons keep the whole text and raw buttons",
        response: ["text": "p1\n\np2", "buttons": [["title": "A", "payload": "/a", "type": "postback"]]],
        expected: [["recipient_id": "u", "text": "p1\n\np2", "buttons": [["title": "A", "payload": "/a", "type": "postback"]]]]),
    .init(
        name: "quick_replies as buttons", response: ["text": "q", "quick_replies": [buttonA]],
        expected: [["recipient_id": "u", "text": "q", "buttons": [buttonA]]]),
    .init(name: "buttons without text", response: ["buttons": [buttonA]], expected: [["recipient_id": "u", "buttons": [buttonA]]]),
    .init(name: "image", response: ["image": "http://i"], expected: [["recipient_id": "u", "image": "http://i"]]),
    .init(name: "attachment", response: ["attachment": ["type": "file"]], expected: [["recipient_id": "u", "attachment": ["type": "file"]]]),
    .init(name: "custom whole", response: ["custom": ["data": ["x": 1]]], expected: [["recipient_id": "u", "custom": ["data": ["x": 1]]]]),
    .init(
        name: "elements as title : subtitle with buttons", response: ["elements": [element1, element2]],
        expected: [
            ["recipient_id": "u", "text": "T1 : S1", "buttons": [["title": "go", "payload": "/go"]]],
            ["recipient_id": "u", "text": "T2 : ", "buttons": []],
        ]),
    .init(
        name: "precedence", response: ["image": "i", "custom": ["c": 1], "text": "t"],
        expected: [["recipient_id": "u", "text": "t"], ["recipient_id": "u", "custom": ["c": 1]], ["recipient_id": "u", "image": "i"]]),
    .init(name: "blank text", response: ["text": "  "], expected: []),
]

@Suite struct OutputMappingTests {
    /// Compares serialised JSON, so key order (the wire bytes) is checked too.
    @Test(arguments: socketIOTable) func socketIO(_ row: MappingCase) {
        let got = OutputMapping.socketIOMessages(for: row.response)
        #expect(got.map(\.serialized) == row.expected.map(\.serialized))
    }

    @Test(arguments: restTable) func rest(_ row: MappingCase) {
        let got = OutputMapping.restMessages(for: row.response, recipientID: "u")
        #expect(got.map(\.serialized) == row.expected.map(\.serialized))
    }

    @Test func listsMapInOrder() {
        let got = OutputMapping.socketIOMessages(for: [["text": "a"], ["image": "u"], ["text": "b\n\nc"]])
        #expect(got.count == 4)
        #expect(got.last == ["text": "c"])
    }
}
