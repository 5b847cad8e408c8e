module plainflow.example/identify

go 1.19
