public import EngineIO
public import Hummingbird
import HTTPTypes

/// Cross-origin access to the HTTP routes (REST channel, conversation API, health), from the same allowlist as
/// the Socket.IO endpoint (`channels.socketio.cors_origins`), decided by the same
/// ``EngineIOConfiguration/CORS-swift.struct`` so that a page allowed to open a socket may also read its
/// history and post to the REST channel.
///
/// - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is answered here with
///   `204` and the allowed methods and headers, whatever the path.
/// - A request from an origin that is not allowed gets `403` with a JSON body naming the setting, before any
///   handler runs (a browser would hide the answer anyway, but a "simple" cross-origin POST would otherwise
///   still have its effect).
/// - Every other response carries the CORS headers for the request's origin. With an empty allowlist this
///   middleware does nothing.
public struct CORSRouteMiddleware<Context: RequestContext>: RouterMiddleware {
    let cors: EngineIOConfiguration.CORS

    /// Creates the middleware for `cors` (the Socket.IO endpoint's settings).
    public init(cors: EngineIOConfiguration.CORS) {
        self.cors = cors
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !cors.allowedOrigins.isEmpty else { return try await next(request, context) }
        let origin = request.headers[.origin]
        guard let headers = cors.responseHeaders(origin: origin) else {
            return HTTPJSON.error(
                .forbidden, reason: "OriginNotAllowed", message: "origin \(origin ?? "") is not allowed; add it to channels.socketio.cors_origins")
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            let preflight = cors.preflightHeaders(origin: origin, requestedHeaders: request.headers[.accessControlRequestHeaders]) ?? headers
            return Response(status: .noContent, headers: preflight)
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        for field in headers { response.headers[field.name] = field.value }
        return response
    }
}
