"""OpenAPI in: an OpenAPI 3.0/3.1 document becomes Tool manifests and, optionally, a UAC contract."""

from link.openapi.document import Document, OpenAPIError, check_document, load_document
from link.openapi.importer import Imported, import_document, import_file
from link.openapi.tools import Options

__all__ = ["Document", "Imported", "OpenAPIError", "Options", "check_document", "import_document",
           "import_file", "load_document"]
