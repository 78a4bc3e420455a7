import ParleyCore
import ParleyDispatch
import ParleyJSON
import Testing

@Suite struct ConversationAPITests {
    func conversation() async throws -> InMemoryConversationStore {
        let store = InMemoryConversationStore()
        let dispatcher = Dispatcher(agent: CountingAgent(), store: store)
        try await withRunning(dispatcher) { () async throws -> Void in
            for text in ["one", "two", "three"] { _ = try await dispatcher.handle(message(text)) }
        }
        return store
    }

    @Test func trackerIsRasaShaped() async throws {
        let api = ConversationAPI(store: try await conversation())
        let tracker = try await api.tracker(conversationID: "alice")
        #expect(tracker["sender_id"] == "alice")
        #expect(tracker["slots"] == ["turns": 3])
        #expect(tracker["latest_message"]?["text"] == "three")
        #expect(tracker["latest_action_name"] == "action_listen")
        #expect(tracker["paused"] == false)
        let all = try #require(tracker["events"]?.arrayValue)
        #expect(all.first?["event"] == "action")
        #expect(all.first?["name"] == "action_session_start")
        #expect(try await api.tracker(conversationID: "alice", include: "none")["events"] == [])
        #expect(try await api.tracker(conversationID: "alice", include: "ALL")["events"]?.arrayValue?.count == all.count)
        let bad = await #expect(throws: ConversationAPIError.self) { try await api.tracker(conversationID: "alice", include: "SOME") }
        #expect(bad?.status == 400)
    }

    @Test func messagesAreUserAndBotNewestLast() async throws {
        let api = ConversationAPI(store: try await conversation())
        let body = try await api.messages(conversationID: "alice")
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(messages.map { $0["sender"]?.stringValue ?? "" } == ["user", "bot", "user", "bot", "user", "bot"])
        #expect(messages.map { $0["text"]?.stringValue ?? "" } == ["one", "turn 1", "two", "turn 2", "three", "turn 3"])
        #expect(messages.last?["response"] == ["text": "turn 3"])
        let last2 = try await api.messages(conversationID: "alice", limit: 2)
        #expect(last2["messages"]?.arrayValue?.count == 2)
    }

    @Test func unknownConversationIs404() async throws {
        let api = ConversationAPI(store: InMemoryConversationStore())
        let e1 = await #expect(throws: ConversationAPIError.self) { try await api.tracker(conversationID: "ghost") }
        #expect(e1?.status == 404)
        #expect(e1?.message.contains("ghost") == true)
        #expect(e1?.body["code"] == 404)
        let e2 = await #expect(throws: ConversationAPIError.self) { try await api.messages(conversationID: "ghost") }
        #expect(e2?.status == 404)
    }

    @Test func tokenIsChecked() throws {
        let open = ConversationAPI(store: InMemoryConversationStore())
        try open.authorize(token: nil, authorization: nil)
        let api = ConversationAPI(store: InMemoryConversationStore(), token: "s3cret")
        try api.authorize(token: "s3cret", authorization: nil)
        try api.authorize(token: nil, authorization: "Bearer s3cret")
        #expect(
            throws: ConversationAPIError(
                status: 401, reason: "NotAuthenticated", message: "this endpoint needs a token: add ?token=<token> or the header Authorization: Bearer <token>")
        ) {
            try api.authorize(token: nil, authorization: nil)
        }
        let wrong = #expect(throws: ConversationAPIError.self) { try api.authorize(token: "nope", authorization: nil) }
        #expect(wrong?.status == 403)
        let wrongHeader = #expect(throws: ConversationAPIError.self) { try api.authorize(token: nil, authorization: "Bearer s3cre") }
        #expect(wrongHeader?.status == 403)
    }
}
