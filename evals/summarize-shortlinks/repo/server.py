from http.server import BaseHTTPRequestHandler, HTTPServer

from links import resolve


class Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = resolve(self.path.strip("/"))
        if url is None:
            self.send_error(404)
            return
        self.send_response(302)
        self.send_header("Location", url)
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("", 8000), Redirect).serve_forever()
