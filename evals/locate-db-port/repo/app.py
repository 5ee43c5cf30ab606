import configparser

config = configparser.ConfigParser()
config.read("deploy/settings.ini")


def database_address() -> tuple[str, int]:
    section = config["database"]
    return section["host"], section.getint("port")


def server_port() -> int:
    return config["server"].getint("port")
