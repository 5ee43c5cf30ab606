import configparser
import logging

config = configparser.ConfigParser()
config.read("settings.ini")
logging.basicConfig(level=config["logging"]["level"], filename=config["logging"]["file"])
