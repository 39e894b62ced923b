package directio

// Address is address, for the external tests.
var Address = address
