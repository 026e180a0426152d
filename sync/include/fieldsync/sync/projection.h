// The model projected to an older schema version (docs/DESIGN.md "Model evolution"): what a device still on
// that version knows. Every entity and field says the version it appeared in (schema::EntityDef::since,
// FieldDef::since); a device of version v knows those with since <= v and nothing else.
//
// The server sends a session only what its Hello's schema version knows (project() on every message it
// queues), and a library configured for an older version (ClientConfig::schema_version) behaves as that
// version's app: it writes nothing newer and refuses a message that mentions anything newer.
#pragma once

#include <cstdint>

#include "fieldsync/schema/model.h"
#include "fieldsync/sync/protocol.h"

namespace fieldsync::projection {

bool knows(schema::EntityId entity, uint32_t version);
bool knows(schema::EntityId entity, uint16_t field, uint32_t version);  // field 0: the record itself

// Strips what `version` does not know. project(RecordState) returns false when the whole record is unknown
// (its entity is newer); the others drop unknown records, changes, conflicts and keys in place.
bool project(RecordState& record, uint32_t version);
void project(ServerTxn& txn, uint32_t version);
// Every message a server sends: batches (their transactions, entering records, purges, conflicts),
// bootstrap pages, push acks (conflicts and the records of a rejection). A ChangeBatch keeps its cursors: a
// transaction left with no change is dropped, the device's cursor still moves past it.
void project(protocol::Message& message, uint32_t version);

// Only the parts of `record` that appeared after `from_version` (up to `to_version`): the fields a device
// that synced at `from_version` never received. A record of an entity newer than from_version is kept whole.
// Returns false when nothing is left (a record without any such field set).
bool newer_part(RecordState& record, uint32_t from_version, uint32_t to_version);
// Whether any entity or field appeared in (from_version, to_version]: what a backfill has to scan.
bool entity_has_newer_parts(const schema::EntityDef& e, uint32_t from_version, uint32_t to_version);

}  // namespace fieldsync::projection
