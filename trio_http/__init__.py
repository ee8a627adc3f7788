"""trio_http: a Trio-native, structured-concurrency ASGI server for HTTP/1.1, HTTP/2 and
WebSockets.

Embedded::

    server = await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"]))
    print(server.urls)

From the shell: ``python -m trio_http module:app --bind 127.0.0.1:8000``.
"""

from ._config import Bind as Bind
from ._config import Config as Config
from ._config import parse_bind as parse_bind
from ._connection import handle_asgi_stream as handle_asgi_stream
from ._errors import BindError as BindError
from ._errors import ClientDisconnected as ClientDisconnected
from ._errors import ConfigError as ConfigError
from ._errors import LifespanFailure as LifespanFailure
from ._errors import TrioHTTPError as TrioHTTPError
from ._listeners import HTTPListener as HTTPListener
from ._listeners import open_http_listeners as open_http_listeners
from ._serve import RunningServer as RunningServer
from ._serve import open_asgi_server as open_asgi_server
from ._serve import serve_asgi as serve_asgi
from ._serve import serve_asgi_listeners as serve_asgi_listeners
from ._wsgi import WSGIMiddleware as WSGIMiddleware

__version__ = "0.1.0"
