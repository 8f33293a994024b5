"""(placeholder: filled in by its owner)"""

from flask import Blueprint

bp = Blueprint("table", __name__)
