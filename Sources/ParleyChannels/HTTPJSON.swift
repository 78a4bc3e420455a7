public import HTTPTypes
public import Hummingbird
import NIOCore
public import ParleyJSON

/// Small helpers for JSON HTTP responses shared by the channels and the conversation API.
public enum HTTPJSON {
    /// A JSON response with `Content-Type: application/json`.
    public static func response(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var bytes: [UInt8] = []
        value.serialize(into: &bytes)
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A Rasa-shaped error body: `{"version","status":"failure","message","reason","code"}`.
    public static func error(_ status: HTTPResponse.Status, reason: String, message: String) -> Response {
        response(errorBody(status, reason: reason, message: message), status: status)
    }

    /// The body of ``error(_:reason:message:)``.
    public static func errorBody(_ status: HTTPResponse.Status, reason: String, message: String) -> JSONValue {
        ["version": .string(parleyVersion), "status": "failure", "message": .string(message), "reason": .string(reason), "code": .int(Int64(status.code))]
    }

    /// `{"status":"ok"}`, the health body of Rasa's channel blueprints.
    public static var ok: Response { response(["status": "ok"]) }
}

/// The Parley version reported by `parley version` and in error bodies.
public let parleyVersion = "0.1.0"
