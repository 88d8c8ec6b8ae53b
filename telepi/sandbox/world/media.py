"""Documents and photos the world's messages carry: their ids, access hashes, sizes and the DC each lives on
(https://core.telegram.org/api/files, https://core.telegram.org/api/datacenter)."""

from __future__ import annotations

import json
from typing import Any

from telepi.sandbox.world.records import Document, Photo
from telepi.sandbox.world.store import Store, dumps


class Media(Store):
    # ---- media objects

    def add_document(
        self,
        *,
        file_id: int,
        mime: str,
        size: int,
        attributes: list[dict[str, Any]],
        thumbs: list[dict[str, Any]] | None = None,
        date: int | None = None,
        dc: int = 2,
        cdn: bool = False,
    ) -> Document:
        with self._tx() as db:
            doc_id = self.random_long()
            db.execute(
                "INSERT INTO documents (id, access_hash, file_id, mime, size, date, attributes, thumbs, dc, cdn)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    self.random_long(),
                    file_id,
                    mime,
                    size,
                    self.now() if date is None else date,
                    dumps(attributes),
                    dumps(thumbs or []),
                    dc,
                    int(cdn),
                ),
            )
        return self.document(doc_id)

    def document(self, doc_id: int) -> Document:
        row = self._db.execute(
            "SELECT id, access_hash, file_id, mime, size, date, attributes, thumbs, dc, cdn"
            " FROM documents WHERE id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no document {doc_id}")
        attributes, thumbs = json.loads(row[6]), json.loads(row[7])
        return Document(row[0], row[1], row[2], row[3], row[4], row[5], attributes, thumbs, row[8], bool(row[9]))

    def add_photo(self, *, sizes: list[dict[str, Any]], date: int | None = None, dc: int = 2) -> Photo:
        with self._tx() as db:
            photo_id = self.random_long()
            db.execute(
                "INSERT INTO photos (id, access_hash, date, sizes, dc) VALUES (?, ?, ?, ?, ?)",
                (photo_id, self.random_long(), self.now() if date is None else date, dumps(sizes), dc),
            )
        return self.photo(photo_id)

    def photo(self, photo_id: int) -> Photo:
        row = self._db.execute(
            "SELECT id, access_hash, date, sizes, dc FROM photos WHERE id = ?", (photo_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no photo {photo_id}")
        return Photo(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def move_file(self, obj_id: int, dc: int) -> None:
        """Put a document's or photo's bytes on another DC: clients holding its old ``dc_id`` then meet
        FILE_MIGRATE_X (core.telegram.org/api/datacenter), as with a file Telegram moved."""
        with self._tx() as db:
            db.execute("UPDATE documents SET dc = ? WHERE id = ?", (dc, obj_id))
            db.execute("UPDATE photos SET dc = ? WHERE id = ?", (dc, obj_id))
