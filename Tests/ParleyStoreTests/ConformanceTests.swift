import Foundation
import ParleyDispatch
import ParleyStore
import ParleyTesting
import Testing

/// Both stores pass the shared ``ConversationStoreConformance`` checks that a new store must pass too.
@Suite struct StoreConformanceTests {
    @Test(arguments: ConversationStoreConformance.checks)
    func memory(_ check: ConversationStoreConformance.Check) async throws {
        try await check.run(ConversationStoreConformance.Subject { InMemoryConversationStore() })
    }

    @Test(arguments: ConversationStoreConformance.checks)
    func sqlite(_ check: ConversationStoreConformance.Check) async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            try await check.run(
                ConversationStoreConformance.Subject {
                    .init(
                        store: try SQLiteConversationStore(configuration: .init(path: path)),
                        reopen: { try SQLiteConversationStore(configuration: .init(path: path)) })
                })
        }
    }
}
